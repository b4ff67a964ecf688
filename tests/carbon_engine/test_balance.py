"""The hourly site balance: numba kernel, its Python form and the numpy twin agree."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from zerocarbon.carbon_engine import balance, balance_reference

Impl = Callable[..., tuple[Any, ...]]
IMPLS: dict[str, Impl] = {
    "numba": balance.balance_site_hours,
    # the undecorated Python form (the function itself under NUMBA_DISABLE_JIT=1)
    "py_func": getattr(balance.balance_site_hours, "py_func", balance.balance_site_hours),
    "reference": balance_reference.balance_site_hours,
}
COLUMNS = (
    "grid_import_kwh",
    "grid_export_kwh",
    "pv_kwh",
    "wind_kwh",
    "battery_charge_kwh",
    "battery_discharge_kwh",
    "fuel_scope1_kg",
    "contract_kwh",
    "gec_kwh",
    "location_factor",
    "market_factor",
)
OUTPUTS = (
    "load_kwh",
    "scope1_kg",
    "scope2_location_kg",
    "scope2_market_kg",
    "cfe_kwh",
    "cfe_share",
    "intensity_location_kg_per_kwh",
    "intensity_market_kg_per_kwh",
)


def _run(impl: Impl, green: float = 0.0, total: float = 0.0, **cols: Any) -> dict[str, Any]:
    n = len(next(iter(cols.values())))
    args = [np.asarray(cols.get(c, np.zeros(n)), dtype=np.float64) for c in COLUMNS]
    if "location_factor" not in cols:
        args[COLUMNS.index("location_factor")] = np.full(n, 0.5)
    if "market_factor" not in cols:
        args[COLUMNS.index("market_factor")] = np.full(n, 0.6)
    res = impl(*args, green, total)
    out = dict(zip(OUTPUTS, res[:8], strict=True))
    out["green_kwh_stored"], out["total_kwh_stored"] = res[8], res[9]
    return out


@pytest.fixture(params=list(IMPLS))
def impl(request: pytest.FixtureRequest) -> Impl:
    return IMPLS[request.param]


def test_load_and_scope2(impl: Impl) -> None:
    r = _run(
        impl,
        grid_import_kwh=[100.0, 0.0],
        grid_export_kwh=[0.0, 20.0],
        pv_kwh=[50.0, 80.0],
        battery_charge_kwh=[10.0, 0.0],
        battery_discharge_kwh=[0.0, 5.0],
        fuel_scope1_kg=[3.0, 4.0],
        contract_kwh=[30.0, 0.0],
        gec_kwh=[20.0, 0.0],
    )
    np.testing.assert_allclose(r["load_kwh"], [140.0, 65.0])
    np.testing.assert_allclose(r["scope1_kg"], [3.0, 4.0])
    np.testing.assert_allclose(r["scope2_location_kg"], [50.0, 0.0])
    np.testing.assert_allclose(r["scope2_market_kg"], [(100 - 30 - 20) * 0.6, 0.0])
    np.testing.assert_allclose(r["intensity_location_kg_per_kwh"], [50 / 140, 0.0])
    np.testing.assert_allclose(r["intensity_market_kg_per_kwh"], [30 / 140, 0.0])


def test_market_never_below_zero(impl: Impl) -> None:
    r = _run(impl, grid_import_kwh=[10.0], contract_kwh=[8.0], gec_kwh=[8.0])
    assert r["scope2_market_kg"][0] == 0.0


def test_exports_come_from_generation_first(impl: Impl) -> None:
    # pv 100, export 40, import 30: load 90; generation left for the load 60
    r = _run(impl, grid_import_kwh=[30.0], grid_export_kwh=[40.0], pv_kwh=[100.0])
    assert r["load_kwh"][0] == 90.0
    assert r["cfe_kwh"][0] == 60.0 and r["cfe_share"][0] == pytest.approx(60 / 90)


def test_contract_counts_gec_does_not(impl: Impl) -> None:
    r = _run(impl, grid_import_kwh=[100.0], pv_kwh=[20.0], contract_kwh=[30.0], gec_kwh=[50.0])
    assert r["cfe_kwh"][0] == 50.0 and r["cfe_share"][0] == pytest.approx(50 / 120)


def test_contract_counts_only_up_to_import_serving_load(impl: Impl) -> None:
    # import 100 of which 60 charges the battery; the contract covers all 100
    r = _run(impl, grid_import_kwh=[100.0], battery_charge_kwh=[60.0], contract_kwh=[100.0])
    assert r["load_kwh"][0] == 40.0 and r["cfe_kwh"][0] == 40.0
    assert r["green_kwh_stored"] == 0.0 and r["total_kwh_stored"] == 60.0  # grid charge: grey


def test_green_stock_carried_through_the_battery(impl: Impl) -> None:
    # hour 0: pv 100, load 40, charge 60 (all green); hour 1: discharge 30 serves load 30
    r = _run(
        impl,
        grid_import_kwh=[0.0, 0.0],
        pv_kwh=[100.0, 0.0],
        battery_charge_kwh=[60.0, 0.0],
        battery_discharge_kwh=[0.0, 30.0],
    )
    np.testing.assert_allclose(r["load_kwh"], [40.0, 30.0])
    np.testing.assert_allclose(r["cfe_share"], [1.0, 1.0])
    assert (r["green_kwh_stored"], r["total_kwh_stored"]) == (30.0, 30.0)


def test_mixed_stock_discharges_its_green_fraction(impl: Impl) -> None:
    # stock 100, 25 green; hour 0 discharges 40 into a load of 40 -> 10 kWh carbon-free
    r = _run(impl, green=25.0, total=100.0, grid_import_kwh=[0.0], battery_discharge_kwh=[40.0])
    assert r["cfe_kwh"][0] == pytest.approx(10.0)
    assert r["green_kwh_stored"] == pytest.approx(15.0) and r["total_kwh_stored"] == 60.0


def test_unknown_stock_is_not_carbon_free_and_never_negative(impl: Impl) -> None:
    r = _run(impl, green=0.0, total=0.0, grid_import_kwh=[0.0], battery_discharge_kwh=[50.0])
    assert r["cfe_kwh"][0] == 0.0
    assert (r["green_kwh_stored"], r["total_kwh_stored"]) == (0.0, 0.0)


def test_generation_serves_load_before_charging(impl: Impl) -> None:
    # empty stock; pv 80 charges 50 and the battery discharges 20 in the same hour:
    # pv serves the load (50) first, the rest (30) is the green part of the charge
    r = _run(
        impl,
        grid_import_kwh=[0.0],
        pv_kwh=[80.0],
        battery_charge_kwh=[50.0],
        battery_discharge_kwh=[20.0],
    )
    assert r["load_kwh"][0] == 50.0 and r["cfe_kwh"][0] == 50.0
    assert (r["green_kwh_stored"], r["total_kwh_stored"]) == (30.0, 30.0)


def test_discharge_uses_the_stock_at_the_start_of_the_hour(impl: Impl) -> None:
    # grey stock of 100; pv 100 charges 100 while 50 are discharged: the discharge takes
    # the start-of-hour fraction (0 green), the stock gains the 50 green left after the load
    r = _run(
        impl,
        green=0.0,
        total=100.0,
        grid_import_kwh=[0.0],
        pv_kwh=[100.0],
        battery_charge_kwh=[100.0],
        battery_discharge_kwh=[50.0],
    )
    assert r["load_kwh"][0] == 50.0 and r["cfe_kwh"][0] == 50.0
    assert (r["green_kwh_stored"], r["total_kwh_stored"]) == (50.0, 150.0)


def test_no_load_gives_nan_ratios_and_zero_cfe(impl: Impl) -> None:
    r = _run(impl, grid_import_kwh=[50.0, 0.0], battery_charge_kwh=[50.0, 0.0])
    np.testing.assert_array_equal(r["load_kwh"], [0.0, 0.0])
    assert np.isnan(r["cfe_share"]).all() and np.isnan(r["intensity_location_kg_per_kwh"]).all()
    assert np.isnan(r["intensity_market_kg_per_kwh"]).all()
    np.testing.assert_array_equal(r["cfe_kwh"], [0.0, 0.0])
    assert r["scope2_location_kg"][0] == 25.0


def test_empty_input(impl: Impl) -> None:
    r = _run(impl, 5.0, 10.0, grid_import_kwh=[])
    assert r["load_kwh"].shape == (0,)
    assert (r["green_kwh_stored"], r["total_kwh_stored"]) == (5.0, 10.0)


_kwh = st.one_of(st.just(0.0), st.floats(0.0, 1000.0, allow_nan=False, allow_subnormal=False))


@st.composite
def _hours(draw: st.DrawFn) -> tuple[dict[str, Any], float, float]:
    n = draw(st.integers(0, 40))
    cols = {c: draw(hnp.arrays(np.float64, n, elements=_kwh)) for c in COLUMNS[:7]}
    imp = cols["grid_import_kwh"]
    contract_frac = draw(hnp.arrays(np.float64, n, elements=st.floats(0.0, 1.0)))
    cols["contract_kwh"] = imp * contract_frac
    cols["gec_kwh"] = (imp - cols["contract_kwh"]) * draw(
        hnp.arrays(np.float64, n, elements=st.floats(0.0, 1.2))
    )
    cols["location_factor"] = draw(hnp.arrays(np.float64, n, elements=st.floats(0.0, 1.0)))
    cols["market_factor"] = draw(hnp.arrays(np.float64, n, elements=st.floats(0.0, 1.0)))
    total = draw(st.floats(0.0, 500.0))
    green = draw(st.floats(0.0, 600.0))  # may exceed total: clipped to it
    return cols, green, total


@settings(max_examples=300, deadline=None)
@given(_hours())
def test_implementations_agree(case: tuple[dict[str, Any], float, float]) -> None:
    cols, green, total = case
    results = {name: _run(impl, green, total, **cols) for name, impl in IMPLS.items()}
    ref = results["reference"]
    for name in ("numba", "py_func"):
        for key in OUTPUTS:
            np.testing.assert_allclose(
                results[name][key], ref[key], rtol=1e-9, atol=1e-9, err_msg=f"{name}: {key}"
            )
        for key in ("green_kwh_stored", "total_kwh_stored"):
            assert results[name][key] == pytest.approx(ref[key], rel=1e-9, abs=1e-9)
    load = ref["load_kwh"]
    assert np.all(ref["cfe_kwh"] >= 0) and np.all(ref["cfe_kwh"] <= np.maximum(load, 0) + 1e-9)
    assert np.all(ref["scope2_market_kg"] >= 0)
    imp = cols["grid_import_kwh"]
    assert np.all(ref["scope2_market_kg"] <= imp * cols["market_factor"] + 1e-9)
    share = ref["cfe_share"][load > 0]
    assert np.all((share >= 0) & (share <= 1 + 1e-12))
    assert np.isnan(ref["cfe_share"][load <= 0]).all()
    assert 0.0 <= ref["green_kwh_stored"] <= ref["total_kwh_stored"]


@settings(max_examples=100, deadline=None)
@given(_hours(), st.integers(0, 40))
def test_splitting_the_run_carries_the_state(
    case: tuple[dict[str, Any], float, float], cut: int
) -> None:
    cols, green, total = case
    n = len(cols["grid_import_kwh"])
    cut = min(cut, n)
    whole = _run(balance.balance_site_hours, green, total, **cols)
    first = _run(balance.balance_site_hours, green, total, **{k: v[:cut] for k, v in cols.items()})
    second = _run(
        balance.balance_site_hours,
        first["green_kwh_stored"],
        first["total_kwh_stored"],
        **{k: v[cut:] for k, v in cols.items()},
    )
    np.testing.assert_array_equal(
        np.concatenate([first["cfe_kwh"], second["cfe_kwh"]]), whole["cfe_kwh"]
    )
    assert second["green_kwh_stored"] == whole["green_kwh_stored"]
