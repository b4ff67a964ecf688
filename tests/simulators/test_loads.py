from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from zerocarbon.simulators.loads import DAY_SHIFT, THREE_SHIFTS, LineLoad, LocalHours, Ramp


def test_ramp_limits_the_rate() -> None:
    ramp = Ramp(rate_per_s=0.1, value=0.0)
    assert ramp.step(1.0, 5.0) == pytest.approx(0.5)
    assert ramp.step(1.0, 5.0) == pytest.approx(1.0)
    assert ramp.step(1.0, 5.0) == pytest.approx(1.0)
    assert ramp.step(0.0, 2.0) == pytest.approx(0.8)


def test_shift_patterns() -> None:
    assert DAY_SHIFT.fraction(3.0) == pytest.approx(0.10)
    assert DAY_SHIFT.fraction(9.0) == pytest.approx(0.85)
    for hour in (0.0, 2.0, 10.0, 12.1, 18.0, 23.9):
        assert 0.55 <= THREE_SHIFTS.fraction(hour) <= 0.90


def test_local_hours_follow_the_zone() -> None:
    shanghai = LocalHours("Asia/Shanghai")
    ts = datetime(2026, 6, 21, 8, 30, tzinfo=ZoneInfo("Asia/Shanghai")).timestamp()
    assert shanghai.hour_of_day(ts) == pytest.approx(8.5)
    berlin = LocalHours("Europe/Berlin")  # daylight saving: +2 h in June, +1 h in January
    june = datetime(2026, 6, 21, 8, 30, tzinfo=ZoneInfo("Europe/Berlin")).timestamp()
    january = datetime(2026, 1, 21, 8, 30, tzinfo=ZoneInfo("Europe/Berlin")).timestamp()
    assert berlin.hour_of_day(june) == pytest.approx(8.5)
    assert berlin.hour_of_day(january) == pytest.approx(8.5)


def test_shift_start_is_a_ramp_of_minutes() -> None:
    line = LineLoad(300.0, DAY_SHIFT, seed=1, label="line_b", noise_fraction=0.0)
    line.start(7.9)
    powers = []
    for k in range(240):  # 07:55 .. 08:15 in 5-s steps
        hour = 7.9 + k * 5 / 3600
        powers.append(line.step(0.0, hour, 5.0))
    assert powers[0] == pytest.approx(30.0)
    assert (
        max(b - a for a, b in zip(powers, powers[1:], strict=False)) <= 300 * 0.10 / 60 * 5 + 1e-9
    )
    reached = next(k for k, p in enumerate(powers) if p >= 0.85 * 300 - 1e-9)
    minutes = (reached * 5 - (8.0 - 7.9) * 3600) / 60
    assert 5.0 <= minutes <= 10.0  # 10 % -> 85 % at 10 %/min
