"""Green-power contracts and GECs allocated to hourly grid import."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zerocarbon.carbon_engine.instruments import (
    ContractVolumes,
    InstrumentError,
    allocate_instruments,
    load_contract_volumes,
    month_bounds_s,
)
from zerocarbon.config import CertificateBatch, SiteConfig, parse_site

SH = ZoneInfo("Asia/Shanghai")
JUNE_START_S, JULY_START_S = month_bounds_s("2026-06", SH)


def _hours(first_s: int, n: int) -> np.ndarray[Any, np.dtype[np.int64]]:
    return first_s + 3600 * np.arange(n, dtype=np.int64)


def _gec(ident: str, count: int, month: str = "2026-06") -> CertificateBatch:
    return CertificateBatch(id=ident, count=count, issued="2026-05", applies_to=month)


def test_month_bounds_in_site_time_zone() -> None:
    assert JUNE_START_S == int(datetime(2026, 5, 31, 16, tzinfo=ZoneInfo("UTC")).timestamp())
    assert (JULY_START_S - JUNE_START_S) // 3600 == 720
    assert month_bounds_s("2026-12", "UTC")[1] == int(
        datetime(2027, 1, 1, tzinfo=ZoneInfo("UTC")).timestamp()
    )


def test_hourly_contract_covers_its_own_hour_only() -> None:
    hours = _hours(JUNE_START_S, 3)
    imp = np.array([10.0, 10.0, 0.0])
    c = ContractVolumes("ppa", hour_start_s=hours[[0, 2]], hourly_kwh=np.array([25.0, 7.0]))
    a = allocate_instruments(hours, imp, [c], [], SH)
    assert a.contract_kwh.tolist() == [10.0, 0.0, 0.0]  # no carry to hour 1
    assert a.contract_hourly_kwh.tolist() == [10.0, 0.0, 0.0]
    (t,) = a.instruments
    assert (t.kind, t.offered_kwh, t.allocated_kwh, t.unused_kwh) == (
        "contract_hourly",
        32.0,
        10.0,
        22.0,
    )


def test_monthly_contract_pro_rata_and_capped() -> None:
    hours = _hours(JUNE_START_S, 4)
    imp = np.array([10.0, 30.0, 0.0, 60.0])
    a = allocate_instruments(hours, imp, [ContractVolumes("gt", {"2026-06": 50.0})], [], SH)
    np.testing.assert_allclose(a.contract_kwh, [5.0, 15.0, 0.0, 30.0])
    assert a.contract_hourly_kwh.sum() == 0.0
    big = allocate_instruments(hours, imp, [ContractVolumes("gt", {"2026-06": 500.0})], [], SH)
    np.testing.assert_allclose(big.contract_kwh, imp)
    (t,) = big.instruments
    assert (t.offered_kwh, t.allocated_kwh, t.unused_kwh) == pytest.approx((500.0, 100.0, 400.0))


def test_monthly_allocation_is_provisional_in_an_open_month() -> None:
    c = ContractVolumes("gt", {"2026-06": 720.0})
    early = allocate_instruments(_hours(JUNE_START_S, 24), np.full(24, 10.0), [c], [], SH)
    assert early.contract_kwh.sum() == pytest.approx(240.0)  # capped by the import so far
    full = allocate_instruments(_hours(JUNE_START_S, 720), np.full(720, 10.0), [c], [], SH)
    np.testing.assert_allclose(full.contract_kwh, 1.0)


def test_a_partial_month_offers_only_its_share() -> None:
    """A live month (or one whose data began mid-month) is not front-loaded: with a day
    of June's 30, 1/30 of the volume (and of a certificate batch) is on offer; with all
    of June, all of it."""
    c = ContractVolumes("gt", {"2026-06": 720.0})
    day = _hours(JUNE_START_S, 24)
    early = allocate_instruments(day, np.full(24, 10.0), [c], [_gec("g", 3)], SH, by_coverage=True)
    np.testing.assert_allclose(early.contract_kwh, 1.0)  # 24 kWh over 24 hours
    assert early.gec_kwh.sum() == pytest.approx(3000.0 / 30)
    month = _hours(JUNE_START_S, 720)
    done = allocate_instruments(month, np.full(720, 10.0), [c], [], SH, by_coverage=True)
    np.testing.assert_allclose(done.contract_kwh, 1.0)


def test_hourly_before_monthly_before_certificates() -> None:
    hours = _hours(JUNE_START_S, 2)
    imp = np.array([100.0, 100.0])
    hourly = ContractVolumes("ppa", hour_start_s=hours[:1], hourly_kwh=np.array([60.0]))
    monthly = ContractVolumes("gt", {"2026-06": 60.0})
    a = allocate_instruments(hours, imp, [monthly, hourly], [_gec("g1", 1)], SH)
    np.testing.assert_allclose(a.contract_hourly_kwh, [60.0, 0.0])
    # monthly pro rata to the uncovered 40 and 100: 60 x 40/140, 60 x 100/140
    np.testing.assert_allclose(a.contract_kwh, [60.0 + 60 * 40 / 140, 60 * 100 / 140])
    # certificates: 1 MWh against the 80 kWh left, capped
    np.testing.assert_allclose(a.gec_kwh, imp - a.contract_kwh)
    np.testing.assert_allclose(a.uncovered_kwh, 0.0, atol=1e-12)
    gec = a.instruments[-1]
    assert (gec.kind, gec.offered_kwh) == ("gec", 1000.0)
    assert gec.allocated_kwh == pytest.approx(80.0) and gec.unused_kwh == pytest.approx(920.0)
    assert set(a.by_instrument_kwh) == {"green_power.ppa", "green_power.gt", "certificates.g1"}


def test_certificates_only_in_their_month_of_the_site_time_zone() -> None:
    # 2026-06-30T16:00Z is 2026-07-01 00:00 in Shanghai: July, not June
    hours = np.array([JULY_START_S - 3600, JULY_START_S], dtype=np.int64)
    imp = np.array([500.0, 500.0])
    a = allocate_instruments(hours, imp, [], [_gec("june", 1), _gec("july", 2, "2026-07")], SH)
    np.testing.assert_allclose(a.by_instrument_kwh["certificates.june"], [500.0, 0.0])
    np.testing.assert_allclose(a.by_instrument_kwh["certificates.july"], [0.0, 500.0])
    in_utc = allocate_instruments(hours, imp, [], [_gec("june", 1)], "UTC")
    np.testing.assert_allclose(in_utc.gec_kwh, [500.0, 500.0])  # both June in UTC


def test_batch_for_a_month_without_given_hours_offers_nothing() -> None:
    a = allocate_instruments(_hours(JUNE_START_S, 2), np.ones(2), [], [_gec("aug", 3, "2026-08")])
    assert a.instruments[0].offered_kwh == 0.0 and a.gec_kwh.sum() == 0.0


def test_order_of_hours_does_not_matter() -> None:
    rng = np.random.default_rng(3)
    hours = JUNE_START_S + 3600 * rng.choice(720, 50, replace=False).astype(np.int64)
    imp = rng.uniform(0, 100, 50)
    args = ([ContractVolumes("gt", {"2026-06": 900.0})], [_gec("g", 1)], SH)
    a = allocate_instruments(hours, imp, *args)
    order = np.argsort(hours)
    b = allocate_instruments(hours[order], imp[order], *args)
    np.testing.assert_allclose(a.contract_kwh[order], b.contract_kwh)
    np.testing.assert_allclose(a.gec_kwh[order], b.gec_kwh)


def test_bad_input() -> None:
    with pytest.raises(InstrumentError, match="unique whole hours"):
        allocate_instruments(np.array([0, 0]), np.ones(2), [], [])
    with pytest.raises(InstrumentError, match="finite and >= 0"):
        allocate_instruments(np.array([0, 3600]), np.array([1.0, -1.0]), [], [])
    with pytest.raises(InstrumentError, match="give monthly_kwh or hourly volumes"):
        ContractVolumes("x")
    with pytest.raises(InstrumentError, match="not YYYY-MM"):
        ContractVolumes("x", {"June": 1.0})


@st.composite
def _cases(draw: st.DrawFn) -> dict[str, Any]:
    n = draw(st.integers(1, 60))
    # hours spread over May-July 2026, any subset, any order
    offsets = draw(st.lists(st.integers(-800, 1500), min_size=n, max_size=n, unique=True))
    hours = JUNE_START_S + 3600 * np.array(offsets, dtype=np.int64)
    kwh = st.floats(0, 500, allow_nan=False)
    imp = np.array(draw(st.lists(kwh, min_size=n, max_size=n)))
    months = st.sampled_from(["2026-05", "2026-06", "2026-07"])
    contracts = [
        ContractVolumes(
            f"m{i}",
            draw(st.dictionaries(months, st.floats(0, 20000), max_size=3)) or {"2026-06": 1.0},
        )
        for i in range(draw(st.integers(0, 2)))
    ]
    if draw(st.booleans()):
        k = draw(st.integers(1, n))
        contracts.append(
            ContractVolumes(
                "h",
                hour_start_s=hours[:k],
                hourly_kwh=np.array(draw(st.lists(kwh, min_size=k, max_size=k))),
            )
        )
    batches = [
        CertificateBatch(
            id=f"g{i}", count=draw(st.integers(1, 30)), issued="2026-04", applies_to=draw(months)
        )
        for i in range(draw(st.integers(0, 3)))
    ]
    return {"hours": hours, "imp": imp, "contracts": contracts, "batches": batches}


@settings(max_examples=200, deadline=None)
@given(_cases())
def test_never_more_than_import_or_volume(case: dict[str, Any]) -> None:
    hours, imp = case["hours"], case["imp"]
    a = allocate_instruments(hours, imp, case["contracts"], case["batches"], SH)
    eps = 1e-9 * (1.0 + imp)
    assert np.all(a.contract_kwh >= 0) and np.all(a.gec_kwh >= 0)
    assert np.all(a.contract_kwh + a.gec_kwh <= imp + eps)
    np.testing.assert_allclose(a.uncovered_kwh + a.contract_kwh + a.gec_kwh, imp, atol=1e-9)
    total_contract = sum(a.by_instrument_kwh[f"green_power.{c.id}"] for c in case["contracts"])
    total_gec = sum(a.by_instrument_kwh[f"certificates.{b.id}"] for b in case["batches"])
    np.testing.assert_allclose(a.contract_kwh, total_contract + np.zeros_like(imp), atol=1e-9)
    np.testing.assert_allclose(a.gec_kwh, total_gec + np.zeros_like(imp), atol=1e-9)
    for t in a.instruments:
        assert t.allocated_kwh <= t.offered_kwh * (1 + 1e-12) + 1e-9
        assert t.unused_kwh == pytest.approx(max(t.offered_kwh - t.allocated_kwh, 0.0))
    for b in case["batches"]:
        start, end = month_bounds_s(b.applies_to, SH)
        outside = (hours < start) | (hours >= end)
        assert np.all(a.by_instrument_kwh[f"certificates.{b.id}"][outside] == 0.0)
        assert a.by_instrument_kwh[f"certificates.{b.id}"].sum() <= b.count * 1000.0 + 1e-9


def _site(tmp_path: Path, **extra: Any) -> SiteConfig:
    data = {
        "devices": [
            {
                "id": "grid_meter",
                "role": "grid",
                "protocol": "modbus_tcp",
                "host": "127.0.0.1",
                "profile": "eastron_sdm630",
            }
        ],
        **extra,
    }
    return parse_site(data, "site.toml", tmp_path)


def test_load_contract_volumes(tmp_path: Path) -> None:
    (tmp_path / "ppa.csv").write_text(
        "# wind PPA, delivered volumes\nhour_start,kwh\n"
        "2026-06-01T00:00+08:00,12.5\n2026-06-01T01:00+08:00,0\n",
        encoding="utf-8",
    )
    site = _site(
        tmp_path,
        green_power=[
            {"id": "gt", "monthly_kwh": {"2026-06": 1000.0}},
            {"id": "ppa", "hourly_csv": "ppa.csv"},
        ],
    )
    monthly, hourly = load_contract_volumes(site)
    assert dict(monthly.monthly_kwh) == {"2026-06": 1000.0} and not monthly.is_hourly
    assert hourly.hour_start_s is not None and hourly.hourly_kwh is not None
    assert hourly.hour_start_s.tolist() == [JUNE_START_S, JUNE_START_S + 3600]
    assert hourly.hourly_kwh.tolist() == [12.5, 0.0]


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ("hour_start,kwh\n2026-06-01T00:00,1\n", ":2: hour_start '2026-06-01T00:00' has no UTC"),
        ("hour_start,kwh\n2026-06-01T00:00Z,-1\n", ":2: kwh '-1' must be >= 0"),
        (
            "hour_start,kwh\n2026-06-01T00:00Z,1\n2026-06-01T08:00+08:00,1\n",
            ":3: hour already given on line 2",
        ),
        ("hour,kwh\n", ":1: header must have hour_start and kwh"),
    ],
)
def test_hourly_csv_errors_name_contract_file_and_line(
    tmp_path: Path, body: str, problem: str
) -> None:
    (tmp_path / "ppa.csv").write_text(body, encoding="utf-8")
    site = _site(tmp_path, green_power=[{"id": "ppa", "hourly_csv": "ppa.csv"}])
    with pytest.raises(InstrumentError) as info:
        load_contract_volumes(site)
    msg = str(info.value)
    assert msg.startswith("green_power[0].hourly_csv: ") and "ppa.csv" in msg and problem in msg


def test_missing_hourly_csv(tmp_path: Path) -> None:
    site = _site(tmp_path, green_power=[{"id": "ppa", "hourly_csv": "nope.csv"}])
    with pytest.raises(InstrumentError, match=r"green_power\[0\]\.hourly_csv: cannot read"):
        load_contract_volumes(site)
