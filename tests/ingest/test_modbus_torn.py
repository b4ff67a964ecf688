"""The torn-read guard's rules on their own (the scheduler's use of it is tested in
test_modbus_collector.py against the simulator)."""

from __future__ import annotations

from zerocarbon.ingest.modbus.decoder import PointValue
from zerocarbon.ingest.modbus.torn import CounterGuard
from zerocarbon.metering.profile import load_profile

BATTERY = load_profile("battery_controller")  # uint32 counters, 0.1 kWh a count
SDM630 = load_profile("eastron_sdm630")  # float32 counters [kWh]


def _u32(raw: int) -> PointValue:
    return PointValue(float(raw), raw * 0.1)


def _f32(value: float) -> PointValue:
    return PointValue(value, value)


def test_only_counters_of_several_registers_are_guarded() -> None:
    assert set(CounterGuard(BATTERY, None).points) == {"charged_energy", "discharged_energy"}
    assert set(CounterGuard(SDM630, None).points) == {
        "total_import_energy",
        "total_export_energy",
    }


def test_integer_counter_rules() -> None:
    guard = CounterGuard(BATTERY, None)
    name = "charged_energy"
    assert guard.implausible(name, _u32(0x1FFFF), 0.0) is None  # nothing to compare with
    guard.accept({name: _u32(0x1FFFF)}, 0.0, ())
    assert guard.implausible(name, _u32(0x20000), 1.0) is None  # the carry itself
    assert "backwards" in (guard.implausible(name, _u32(0x10000), 1.0) or "")  # old high
    assert "65536" in (guard.implausible(name, _u32(0x2FFFF), 1.0) or "")  # old low
    assert "65536" in (guard.implausible(name, _u32(0x3FFFF), 1.0) or "")  # 2 x 65536
    assert guard.implausible(name, _u32(0x1FFFF + 70_000), 1.0) is None  # no rating: fine
    assert guard.suspects({name: _u32(0x10000), "soc": PointValue(1.0, 0.1)}, 1.0) == [name]


def test_the_rating_bounds_a_counter_step() -> None:
    guard = CounterGuard(SDM630, rated_power_kw=100.0)
    name = "total_import_energy"
    guard.accept({name: _f32(1000.0)}, 0.0, ())
    # 1.5 x 100 kW over 60 s is 2.5 kWh (plus two steps of the value's resolution)
    assert guard.implausible(name, _f32(1002.4), 60.0) is None
    assert "rating" in (guard.implausible(name, _f32(1010.0), 60.0) or "")
    assert guard.implausible(name, _f32(1010.0), 600.0) is None


def test_a_reread_decides() -> None:
    guard = CounterGuard(BATTERY, None)
    name = "charged_energy"
    guard.accept({name: _u32(0x1FFFF)}, 0.0, ())
    torn = _u32(0x10000)
    assert guard.resolve(name, torn, _u32(0x20000), 1.0)  # the re-read is plausible
    assert guard.resolve(name, _u32(50), _u32(50), 1.0)  # a reset, seen twice
    assert guard.resolve(name, _u32(50), _u32(52), 1.0)  # a reset, still counting
    assert not guard.resolve(name, torn, _u32(0x2FFFF), 1.0)  # torn again, the other way
    assert not guard.resolve(name, _u32(50), _u32(49), 1.0)  # backwards from the first
    assert not guard.resolve(name, torn, PointValue(0.0, None), 1.0)  # no value


def test_a_float_reread_must_stay_close_to_the_first() -> None:
    guard = CounterGuard(SDM630, None)
    name = "total_export_energy"
    guard.accept({name: _f32(5000.0)}, 0.0, ())
    assert guard.resolve(name, _f32(12.5), _f32(12.5), 1.0)  # a meter exchanged
    assert guard.resolve(name, _f32(12.5), _f32(12.5001), 1.0)
    assert not guard.resolve(name, _f32(12.5), _f32(12.7), 1.0)  # 1.6 %: words of others


def test_refused_values_are_not_remembered() -> None:
    guard = CounterGuard(BATTERY, None)
    name = "discharged_energy"
    guard.accept({name: _u32(1000)}, 0.0, ())
    guard.accept({name: _u32(1000 + 0x10000)}, 1.0, refused=[name])
    assert guard.implausible(name, _u32(1001), 2.0) is None  # judged against 1000
    guard.accept({name: _u32(1001)}, 2.0, ())
    assert guard.implausible(name, _u32(1000), 3.0) is not None


def test_the_rating_counts_from_when_the_value_last_moved() -> None:
    """A register that stood still (resolution steps) then moves: the step is judged
    over the time since it last moved, not since the last poll."""
    guard = CounterGuard(SDM630, rated_power_kw=100.0)
    name = "total_import_energy"
    guard.accept({name: _f32(1000.0)}, 0.0)
    guard.accept({name: _f32(1000.0)}, 50.0)  # unchanged at the next poll
    assert guard.suspects({name: _f32(1002.4)}, 60.0) == []  # 2.4 kWh in 60 s: fine
    guard.accept({name: _f32(1002.4)}, 60.0)
    assert guard.suspects({name: _f32(1004.9)}, 70.0) == [name]  # 2.5 kWh in 10 s
