import pytest

from infersweep.bench.timescale import to_simulated_time


def test_durations_scale_up_and_rates_scale_down() -> None:
    wall = {
        "duration": 2.0,
        "median_ttft_ms": 1.5,
        "p99.9_itl_ms": 0.2,
        "output_throughput": 1000.0,
        "total_token_throughput": 5000.0,
        "request_goodput": 8.0,
        "request_goodput:": 8.0,
        "median_intvty": 4000.0,
        "benchmark_start_time_unix": 1.7e9,
        "benchmark_end_time_unix": 1.7e9 + 2.0,
        "completed": 40,
        "ttfts": [0.001, 0.002],
        "itls": [[0.0005, 0.0006], []],
        "infersweep": {"passed": True},
    }
    sim = to_simulated_time(wall, 20.0)
    assert (
        sim["duration"] == 40.0
        and sim["median_ttft_ms"] == 30.0
        and sim["p99.9_itl_ms"] == pytest.approx(4.0)
    )
    assert sim["output_throughput"] == 50.0 and sim["total_token_throughput"] == 250.0
    assert sim["request_goodput"] == sim["request_goodput:"] == 0.4 and sim["median_intvty"] == 200.0
    # wall-clock instants locate the window on the telemetry clock: never scaled
    assert (sim["benchmark_start_time_unix"], sim["benchmark_end_time_unix"]) == (1.7e9, 1.7e9 + 2.0)
    assert sim["completed"] == 40  # counts are not times
    assert sim["ttfts"] == pytest.approx([0.02, 0.04]) and sim["itls"][0] == pytest.approx([0.01, 0.012])
    assert sim["infersweep"]["time_scale"] == 20.0 and sim["infersweep"]["wall_clock"]["duration"] == 2.0
    assert sim["infersweep"]["passed"] is True and wall["duration"] == 2.0  # input untouched


def test_scale_one_is_identity_but_recorded() -> None:
    r = to_simulated_time({"duration": 3.0}, 1.0)
    assert r["duration"] == 3.0 and r["infersweep"]["time_scale"] == 1.0


def test_bad_scale() -> None:
    with pytest.raises(ValueError):
        to_simulated_time({}, 0)
