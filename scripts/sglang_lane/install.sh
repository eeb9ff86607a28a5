#!/usr/bin/env bash
# Install the SGLang argparse lane: sglang 0.5.12 (--no-deps) in .venv-sglang beside the machine's local CPU
# torch wheel and a lean dependency set, enough to build SGLang's own `ServerArgs` argument parser on CPU and
# parse recipes with it (include/infersweep/recipes/sglang_argparse_probe.py). Nothing is served: SGLang cannot
# run on CPU from PyPI (shared/notes/engines-sglang-trt-atom.md, "Validating SGLang argv on CPU").
#
# Idempotent and cached: a stamp ($VENV/.installed) records a hash of this script and of the requirements
# file; when it matches, nothing is installed and the run takes well under a second.
#
# Exit codes:
#   0   installed (or already installed); the last line printed on stdout is the lane's python
#   75  this machine cannot install the lane (no Python 3.11, no local torch==2.13.0+cpu wheel, the package
#       index unreachable, or pip could not install the pinned set); one line "SKIP: ..." on stderr says why
#   other: a bug in this script (fails the build)
#
# pip, not uv: torch==2.13.0+cpu is a local version only the machine's local wheel directory holds, and only
# pip reads that directory (find-links in the machine's pip config). Every pip call runs under `timeout`.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
HERE="$ROOT/scripts/sglang_lane"
VENV="${INFERSWEEP_SGLANG_VENV:-$ROOT/.venv-sglang}"
PYTHON="${INFERSWEEP_SGLANG_BASE_PYTHON:-python3.11}"
REQS="$HERE/requirements-sglang.txt"
STAMP="$VENV/.installed"
SGLANG_VERSION="0.5.12"
TORCH_VERSION="2.13.0+cpu"
PIP_TIMEOUT_S="${INFERSWEEP_PIP_TIMEOUT_S:-900}"
SKIP_CODE=75

skip() {
  echo "SKIP: $*" >&2
  exit "$SKIP_CODE"
}

log() { echo "sglang-lane: $*" >&2; }

want_hash() {
  cat "$0" "$REQS" | sha256sum | cut -c1-16
}

if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$(want_hash)" && -x "$VENV/bin/python" ]]; then
  log "venv up to date ($VENV)"
  echo "$VENV/bin/python"
  exit 0
fi

# --- can this machine install it at all? -----------------------------------------------------------------
command -v "$PYTHON" >/dev/null 2>&1 || skip "$PYTHON not found (the lane needs Python 3.11: the local torch wheel is cp311)"
pyver="$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null || true)"
[[ "$pyver" == "3.11" ]] || skip "$PYTHON ${pyver:+is Python $pyver}${pyver:-does not run}; the lane needs Python 3.11 (the local torch wheel is cp311)"
# torch==2.13.0+cpu is on no public index: look for it in pip's find-links directories (as scripts/real_engine/install.sh).
links="${PIP_FIND_LINKS:-} $("$PYTHON" -m pip config get global.find-links 2>/dev/null || true)"
torch_wheel=""
for d in $links; do
  d="${d#file://}"
  for w in "$d"/torch-"${TORCH_VERSION/+/%2B}"-cp311-*.whl "$d"/torch-"$TORCH_VERSION"-cp311-*.whl; do
    [[ -f "$w" ]] && torch_wheel="$w" && break 2
  done
done
[[ -n "$torch_wheel" ]] || skip "no torch-$TORCH_VERSION cp311 wheel in pip's find-links (${links// /}); the public torch is a CUDA build of several GB"
log "torch wheel: $torch_wheel"

started=$(date +%s)
rm -f "$STAMP"
[[ -x "$VENV/bin/python" ]] || "$PYTHON" -m venv "$VENV" || skip "cannot create a venv with $PYTHON at $VENV"
# pip's output without the machine's index warnings and without the resolver's list of what sglang (installed
# --no-deps on purpose) requires but does not get; anything else, errors included, is shown.
pip_() {
  timeout "$PIP_TIMEOUT_S" "$VENV/bin/python" -m pip "$@" 2>&1 \
    | grep -v -E "^WARNING: Location 'file://|^ERROR: pip's dependency resolver does not currently take|^This behaviour is the source of the following dependency conflicts|^sglang $SGLANG_VERSION requires " >&2
  return "${PIPESTATUS[0]}"
}
pip_ install -q -U pip || skip "pip could not upgrade itself in $VENV (package index unreachable?)"
# sglang without its dependency list (CUDA torch, triton, flashinfer, sgl-kernel: several GB, none needed to
# parse), then the local CPU torch with the pinned lean set (torchvision included, see requirements-sglang.in).
pip_ install -q --no-deps "sglang==$SGLANG_VERSION" \
  || skip "pip could not install sglang==$SGLANG_VERSION (package index unreachable? see the pip output above)"
pip_ install -q "$torch_wheel" -r "$REQS" || skip "pip could not install torch $TORCH_VERSION + $REQS (see the pip output above)"

version="$(cd / && timeout 300 "$VENV/bin/python" -I -c 'from importlib.metadata import version; print(version("sglang"))' 2>/dev/null || true)"
[[ "$version" == "$SGLANG_VERSION" ]] || { log "installed sglang is '$version', expected $SGLANG_VERSION"; exit 1; }
want_hash > "$STAMP"
log "venv ready in $(( $(date +%s) - started )) s: sglang $version, $(du -sh "$VENV" | cut -f1) ($VENV)"
echo "$VENV/bin/python"
