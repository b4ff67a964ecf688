"""Grid factors: the shipped MEE table, site resolution, errors, hourly series."""

from __future__ import annotations

import csv
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import numpy as np
import pytest

from zerocarbon.carbon_engine.factors import (
    FACTORS_CSV,
    ConstantFactorSource,
    CsvFactorSource,
    FactorError,
    GridFactors,
    HttpJsonFactorSource,
    grid_factors,
    hourly_factor_source,
    known_years,
    load_hourly_factors_csv,
    parse_hourly_factors_json,
    resolve_grid_factors,
    site_factor_errors,
)
from zerocarbon.config import SiteConfig, parse_site

ANNUAL = GridFactors("east", 2023, 0.55, 0.6096)


def _site(base_dir: Path | None = None, **sections: Any) -> SiteConfig:
    data: dict[str, Any] = {
        "site": {"timezone": "Asia/Shanghai"},
        "mqtt": {"url": "mqtt://127.0.0.1:1883"},
        "devices": [
            {
                "id": "grid_meter",
                "role": "grid",
                "protocol": "modbus_tcp",
                "host": "127.0.0.1",
                "profile": "eastron_sdm630",
            },
            {
                "id": "boiler_gas",
                "role": "fuel",
                "fuel": "natural_gas",
                "protocol": "mqtt",
                "topic": "f/gas",
                "fields": {"v": "gas_volume_nm3"},
            },
        ],
    }
    data.update(sections)
    return parse_site(data, "site.toml", base_dir)


def _ts(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp())


# --- the shipped table -----------------------------------------------------------------


def test_every_row_has_a_source_cited_in_the_header() -> None:
    text = FACTORS_CSV.read_text(encoding="utf-8")
    header = "".join(line for line in text.splitlines(True) if line.startswith("#"))
    rows = list(csv.DictReader(line for line in text.splitlines() if not line.startswith("#")))
    assert rows
    for row in rows:
        assert row["source"] and row["source"] in header
        assert 0.0 < float(row["factor_kg_per_kwh"]) < 1.0
    assert "MISSING" in header
    assert known_years() == [2021, 2022, 2023]


@pytest.mark.parametrize(
    ("year", "national", "residual"),
    [(2021, 0.5568, 0.5942), (2022, 0.5366, 0.5856), (2023, 0.5306, 0.6096)],
)
def test_national_and_residual_factors_as_published(
    year: int, national: float, residual: float
) -> None:
    f = grid_factors("national", year)
    assert f.location_kg_per_kwh == national and f.market_kg_per_kwh == residual


def test_grid_factors_keeps_working_for_callers() -> None:
    f = grid_factors("east", 2023)
    assert (f.region, f.data_year, f.location_kg_per_kwh, f.market_kg_per_kwh) == (
        "east",
        2023,
        0.55,
        0.6096,
    )
    o = grid_factors("east", 2023, 0.4, 0.5)
    assert (o.location_kg_per_kwh, o.market_kg_per_kwh) == (0.4, 0.5)
    assert GridFactors("east", 2023, 0.55, 0.6096) == ANNUAL  # positional form still works


# --- site resolution -------------------------------------------------------------------


def test_region_factors_with_their_sources() -> None:
    f = resolve_grid_factors(_site(grid={"region": "east", "data_year": 2023}))
    assert f.location_kg_per_kwh == 0.55 and f.market_kg_per_kwh == 0.6096
    assert f.location_source == "MEE 2023 regional east"
    assert "excluding market-traded" in f.market_source


def test_province_overrides_region() -> None:
    site = _site(grid={"region": "north", "province": "hebei", "data_year": 2022})
    f = resolve_grid_factors(site)
    assert f.location_kg_per_kwh == 0.7252 and f.province == "hebei"
    assert f.market_kg_per_kwh == 0.5856
    zh = resolve_grid_factors(_site(grid={"province": "云南", "data_year": 2022}))
    assert zh.location_kg_per_kwh == 0.1073 and zh.province == "yunnan"


def test_site_overrides_win() -> None:
    site = _site(
        grid={
            "province": "hebei",
            "data_year": 2022,
            "location_factor_kg_per_kwh": 0.5,
            "market_factor_kg_per_kwh": 0.7,
        }
    )
    f = resolve_grid_factors(site)
    assert (f.location_kg_per_kwh, f.market_kg_per_kwh) == (0.5, 0.7)
    assert "site file" in f.location_source and "site file" in f.market_source


def test_unknown_province_names_key_path_and_choices() -> None:
    with pytest.raises(FactorError) as info:
        resolve_grid_factors(_site(grid={"province": "xyz", "data_year": 2022}))
    msg = str(info.value)
    assert msg.startswith("grid.province: no MEE factor for 'xyz' in data year 2022; provinces:")
    assert "hebei" in msg


def test_known_province_without_shipped_factor() -> None:
    with pytest.raises(FactorError, match=r"grid\.province: .*'beijing' in data year 2023"):
        resolve_grid_factors(_site(grid={"province": "beijing", "data_year": 2023}))


def test_unknown_region_and_year() -> None:
    with pytest.raises(FactorError) as info:
        resolve_grid_factors(_site(grid={"region": "mars", "data_year": 2023}))
    assert str(info.value).startswith("grid.region:") and "region 'mars'" in str(info.value)
    with pytest.raises(FactorError) as info:
        resolve_grid_factors(_site(grid={"region": "east", "data_year": 2021}))
    assert "data year 2021" in str(info.value)
    with pytest.raises(FactorError, match=r"grid\.data_year: .* 2020"):
        resolve_grid_factors(
            _site(grid={"region": "national", "data_year": 2020, "location_factor_kg_per_kwh": 0.5})
        )


def test_unknown_region_is_an_error_even_with_a_province() -> None:
    with pytest.raises(FactorError, match=r"grid\.region: .*'est'"):
        resolve_grid_factors(_site(grid={"region": "est", "province": "hebei", "data_year": 2022}))


def test_factor_error_is_a_value_error() -> None:
    assert issubclass(FactorError, ValueError)


def test_site_factor_errors_collects_all_problems() -> None:
    site = _site(
        grid={"region": "mars"},
        fuels={"mystery": {"ncv_gj_per_unit": 0.03}},
        devices=[
            {
                "id": "grid_meter",
                "role": "grid",
                "protocol": "modbus_tcp",
                "host": "127.0.0.1",
                "profile": "eastron_sdm630",
            },
            {
                "id": "boiler",
                "role": "fuel",
                "fuel": "coal",
                "protocol": "mqtt",
                "topic": "f/coal",
                "fields": {"v": "fuel_mass_kg"},
            },
        ],
    )
    errors = site_factor_errors(site)
    assert any(e.startswith("grid.region:") for e in errors)
    assert any(e.startswith("fuels.mystery:") for e in errors)
    assert any(e.startswith("devices[1].fuel:") and "'boiler'" in e for e in errors)
    assert site_factor_errors(_site(grid={"region": "east"})) == []


# --- hourly series ---------------------------------------------------------------------


def test_constant_source() -> None:
    hours = np.array([0, 3600], dtype=np.int64)
    loc, mkt, from_series = ConstantFactorSource(ANNUAL).factors_for(hours)
    assert loc.tolist() == [0.55, 0.55] and mkt.tolist() == [0.6096, 0.6096]
    assert not from_series.any()


def test_csv_series_with_fallback(tmp_path: Path) -> None:
    path = tmp_path / "grid.csv"
    path.write_text(
        "# hourly intensity from the provincial grid\n"
        "hour_start,location_kg_per_kwh,market_kg_per_kwh\n"
        "2026-06-01T08:00+08:00,0.40,0.70\n"
        "2026-06-01T01:00Z,0.45,\n",
        encoding="utf-8",
    )
    series = load_hourly_factors_csv(path, ANNUAL)
    hours = np.array(
        [
            _ts("2026-06-01T01:00+00:00"),
            _ts("2026-06-01T00:00+00:00"),
            _ts("2026-06-01T02:00+00:00"),
        ],
        dtype=np.int64,
    )
    loc, mkt, from_series = series.factors_for(hours)
    assert loc.tolist() == [0.45, 0.40, 0.55]
    assert mkt.tolist() == [0.6096, 0.70, 0.6096]  # empty market cell: the annual factor
    assert from_series.tolist() == [True, True, False]


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("2026-06-01T08:00,0.4", "no UTC offset"),
        ("2026-06-01T08:30+08:00,0.4", "does not start a UTC hour"),
        ("yesterday,0.4", "not ISO 8601"),
        ("2026-06-01T08:00+08:00,-1", "finite number >= 0"),
        ("2026-06-01T08:00+08:00,abc", "not a number"),
        ("2026-06-01T08:00+08:00", "1 cells"),
    ],
)
def test_csv_errors_name_file_and_line(tmp_path: Path, line: str, problem: str) -> None:
    path = tmp_path / "grid.csv"
    path.write_text(f"hour_start,location_kg_per_kwh\n\n{line}\n", encoding="utf-8")
    with pytest.raises(FactorError) as info:
        load_hourly_factors_csv(path, ANNUAL)
    assert f"{path}:3" in str(info.value) and problem in str(info.value)


def test_csv_duplicate_hour_and_missing_column(tmp_path: Path) -> None:
    path = tmp_path / "grid.csv"
    path.write_text(
        "hour_start,location_kg_per_kwh\n2026-06-01T08:00+08:00,0.4\n2026-06-01T00:00Z,0.5\n",
        encoding="utf-8",
    )
    with pytest.raises(FactorError, match=r"grid\.csv:3: hour already given at .*grid\.csv:2"):
        load_hourly_factors_csv(path, ANNUAL)
    path.write_text("hour_start,kwh\n", encoding="utf-8")
    with pytest.raises(FactorError, match=r"grid\.csv:1: header lacks column 'location_kg"):
        load_hourly_factors_csv(path, ANNUAL)


def test_site_hourly_source_reads_path_relative_to_site_file(tmp_path: Path) -> None:
    (tmp_path / "series").mkdir()
    (tmp_path / "series" / "grid.csv").write_text(
        "hour_start,location_kg_per_kwh\n2026-06-01T00:00Z,0.3\n", encoding="utf-8"
    )
    site = _site(tmp_path, grid={"region": "east", "hourly_factors_csv": "series/grid.csv"})
    source = hourly_factor_source(site)
    loc, mkt, found = source.factors_for(np.array([_ts("2026-06-01T00:00+00:00")], np.int64))
    assert (loc[0], mkt[0], bool(found[0])) == (0.3, 0.6096, True)
    assert isinstance(source, CsvFactorSource)
    assert isinstance(hourly_factor_source(_site(grid={"region": "east"})), ConstantFactorSource)
    broken = _site(tmp_path, grid={"region": "east", "hourly_factors_csv": "nope.csv"})
    assert any(e.startswith("grid.hourly_factors_csv:") for e in site_factor_errors(broken))
    no_ppa = _site(
        tmp_path, grid={"region": "east"}, green_power=[{"id": "ppa", "hourly_csv": "missing.csv"}]
    )
    assert any(e.startswith("green_power[0].hourly_csv:") for e in site_factor_errors(no_ppa))


def test_json_series_shapes_and_errors() -> None:
    doc = {
        "hours": [
            {"hour_start": 7200, "location_kg_per_kwh": 0.3},
            {
                "hour_start": "1970-01-01T01:00Z",
                "location_kg_per_kwh": 0.2,
                "market_kg_per_kwh": 0.9,
            },
        ]
    }
    series = parse_hourly_factors_json(json.dumps(doc), ANNUAL)
    assert series.hour_start_s.tolist() == [3600, 7200]
    bare = parse_hourly_factors_json(json.dumps(doc["hours"]), ANNUAL)
    assert bare.location_kg_per_kwh.tolist() == [0.2, 0.3]
    with pytest.raises(FactorError, match=r"src: hours\[0\]: location_kg_per_kwh is missing"):
        parse_hourly_factors_json('[{"hour_start": 0}]', ANNUAL, "src")
    with pytest.raises(FactorError, match="invalid JSON"):
        parse_hourly_factors_json("{", ANNUAL)


class _Handler(BaseHTTPRequestHandler):
    requests: list[dict[str, list[str]]] = []

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        query = parse_qs(urlparse(self.path).query)
        type(self).requests.append(query)
        start = int(datetime.fromisoformat(query["start"][0]).timestamp())
        end = int(datetime.fromisoformat(query["end"][0]).timestamp())
        hours = [
            {
                "hour_start": datetime.fromtimestamp(h, UTC).isoformat(),
                "location_kg_per_kwh": 0.1 + h / 3600 / 1000,
            }
            for h in range(start, end, 3600)
        ]
        body = json.dumps({"hours": hours}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        return


@pytest.fixture
def http_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/factors"
    server.shutdown()
    server.server_close()


def test_http_provider_fetches_outside_the_lookup(http_url: str) -> None:
    source = HttpJsonFactorSource(http_url, ANNUAL, timeout_s=5.0)
    hours = np.array([0, 3600, 7200], dtype=np.int64)
    _loc, _mkt, found = source.factors_for(hours)
    assert not found.any()  # nothing fetched yet: no network in the look-up
    assert source.refresh(0, 7200) == 2
    assert _Handler.requests[-1] == {
        "start": ["1970-01-01T00:00:00Z"],
        "end": ["1970-01-01T02:00:00Z"],
    }
    loc, mkt, found = source.factors_for(hours)
    assert found.tolist() == [True, True, False]
    assert loc.tolist() == pytest.approx([0.1, 0.101, 0.55])
    assert mkt.tolist() == [0.6096] * 3
    assert source.refresh(7200, 10800) == 1  # merged with what was held
    assert source.factors_for(hours)[2].all()


def test_http_provider_refuses_other_schemes_and_keeps_hours_on_failure() -> None:
    with pytest.raises(FactorError, match="must be http"):
        HttpJsonFactorSource("file:///etc/passwd", ANNUAL)
    source = HttpJsonFactorSource("http://127.0.0.1:9/none", ANNUAL, timeout_s=1.0)
    with pytest.raises(OSError):
        source.refresh(0, 3600)
    assert source.series.hour_start_s.shape == (0,)
