"""AirflowSettings: the lease poke backoff that keeps waiting serves from starving groups holding nodes."""

from __future__ import annotations

import pytest

from infersweep.airflow.settings import AirflowSettings

pytestmark = pytest.mark.unit


def _settings(monkeypatch: pytest.MonkeyPatch, poke: str, poke_max: str | None) -> AirflowSettings:
    monkeypatch.setenv("INFERSWEEP_LEASE_POKE_S", poke)
    if poke_max is None:
        monkeypatch.delenv("INFERSWEEP_LEASE_POKE_MAX_S", raising=False)
    else:
        monkeypatch.setenv("INFERSWEEP_LEASE_POKE_MAX_S", poke_max)
    return AirflowSettings.from_env()


def test_poke_backs_off_by_half_per_reschedule_within_jitter(monkeypatch: pytest.MonkeyPatch) -> None:
    s = _settings(monkeypatch, "2", "1000")
    for k, base in [(0, 2.0), (1, 3.0), (2, 4.5), (3, 6.75)]:
        for _ in range(50):
            assert base <= s.lease_poke_delay(k) <= base * 1.5


def test_poke_backoff_is_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    s = _settings(monkeypatch, "10", None)  # default ceiling 60 s
    assert s.lease_poke_max_s == 60.0
    delays = [s.lease_poke_delay(500) for _ in range(200)]
    assert min(delays) >= 60.0 and max(delays) <= 90.0


def test_ceiling_below_poke_keeps_the_poke(monkeypatch: pytest.MonkeyPatch) -> None:
    s = _settings(monkeypatch, "30", "5")
    assert all(30.0 <= s.lease_poke_delay(k) <= 45.0 for k in range(10))


def test_queue_share_spreads_many_waiting_groups(monkeypatch: pytest.MonkeyPatch) -> None:
    import infersweep.airflow.settings as mod

    # 196 groups waiting for 4 nodes, poke 10 s: each draws its wait from [0, 490 s] (then jitter), so their
    # pokes arrive spread out instead of all together.
    s = _settings(monkeypatch, "10", "60")
    draws = iter([0.0, 0.0, 1.0, 0.0, 0.5, 1.0])  # (spread, jitter) pairs
    monkeypatch.setattr(mod.random, "random", lambda: next(draws))
    assert s.lease_poke_delay(0, waiting=196, nodes=4) == 10.0  # the backoff floor
    assert s.lease_poke_delay(0, waiting=196, nodes=4) == 490.0  # the top of the share
    assert s.lease_poke_delay(0, waiting=196, nodes=4) == 245.0 * 1.5
    # Fewer waiters than nodes: the backoff decides.
    monkeypatch.setattr(mod.random, "random", lambda: 1.0)
    assert s.lease_poke_delay(0, waiting=2, nodes=4) == 15.0


def test_queue_share_is_capped_at_an_hour(monkeypatch: pytest.MonkeyPatch) -> None:
    import infersweep.airflow.settings as mod

    s = _settings(monkeypatch, "10", "60")
    monkeypatch.setattr(mod.random, "random", lambda: 1.0)
    assert s.lease_poke_delay(0, waiting=10**6, nodes=1) == 1.5 * mod.MAX_POKE_SHARE_S
