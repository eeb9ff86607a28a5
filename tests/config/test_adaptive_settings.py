"""`adaptive:` and `repeats:` in a sweep file (issue 19): parsed, off by default, bad values named with the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from infersweep.config.adaptive import AdaptiveSettings, RepeatSettings
from infersweep.config.errors import ConfigError
from infersweep.config.sweep import load_sweep
from tests.airflow.harness import sim_sweep

KEY = "llama-cfg"


def _write(tmp_path: Path, extra: str) -> Path:
    path = tmp_path / "sweep.yaml"
    path.write_text(sim_sweep(KEY, isl=1024, osl=128, nodes=["n0"], points=["{ tp: 1, conc-list: [1, 4, 16] }"])
                    + extra)
    return path


def test_defaults_keep_the_full_ladder_once_per_point(tmp_path: Path) -> None:
    settings = load_sweep([_write(tmp_path, "")]).settings_for(KEY)
    assert settings.adaptive == AdaptiveSettings() and settings.adaptive.mode == "off"
    assert settings.repeats.for_point(seq_len="1k1k", tp=1, ep=1, dp_attn=False, conc=4) == 1


def test_adaptive_and_repeats_blocks_are_read(tmp_path: Path) -> None:
    extra = ("adaptive:\n  mode: frontier\n  tolerance: 0.02\n  max-points: 0.6\n  concurrencies: range\n"
             "  priors: [history]\n  prior-margin: { history: 0.2 }\n  slo: { p99-ttft-ms: 2000, median-tpot-ms: 50 }\n"
             "repeats:\n  default: 2\n  rules:\n  - { tp: 1, n: 3 }\n  - { tp: 1, conc: 16, n: 5 }\n")
    settings = load_sweep([_write(tmp_path, extra)]).settings_for(KEY)
    a = settings.adaptive
    assert (a.mode, a.tolerance, a.max_points, a.concurrencies, a.priors) == ("frontier", 0.02, 0.6, "range", ("history",))
    assert a.prior_margin.history == 0.2 and a.prior_margin.roofline == 0.25
    assert a.slo is not None and a.slo.targets() == {"p99_ttft_ms": 2000.0, "median_tpot_ms": 50.0}
    assert a.slo.describe() == "p99 TTFT <= 2000 ms, median TPOT <= 50 ms"
    r = settings.repeats
    assert r.for_point(seq_len="1k1k", tp=2, ep=1, dp_attn=False, conc=16) == 2
    assert r.for_point(seq_len="1k1k", tp=1, ep=1, dp_attn=False, conc=4) == 3
    assert r.for_point(seq_len="1k1k", tp=1, ep=1, dp_attn=False, conc=16) == 5  # the last matching rule wins


def test_repeats_as_a_number() -> None:
    assert RepeatSettings.model_validate(4).default == 4


@pytest.mark.parametrize(("extra", "path", "words"), [
    ("adaptive: { mode: slo }\n", "adaptive", "slo: {p99-ttft-ms: 2000"),
    ("adaptive: { tolerance: 2 }\n", "adaptive.tolerance", "0.5"),
    ("adaptive: { mode: sometimes }\n", "adaptive.mode", "frontier"),
    ("adaptive: { slo: {} }\n", "adaptive.slo", "at least one target"),
    ("adaptive: { tolerence: 0.1 }\n", "adaptive.tolerence", "tolerance"),
    ("repeats: 0\n", "repeats", "1"),
    ("repeats: { default: 2, rules: [{ tp: 1 }] }\n", "repeats.rules[0].n", "n"),
])
def test_bad_values_name_the_file_the_key_path_and_the_fix(tmp_path: Path, extra: str, path: str, words: str) -> None:
    sweep = _write(tmp_path, extra)
    with pytest.raises(ConfigError) as info:
        load_sweep([sweep])
    text = str(info.value)
    assert str(sweep) in text or sweep.name in text
    assert path in text, text
    assert words in text, text
