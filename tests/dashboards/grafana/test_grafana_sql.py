"""The test support's expander of Grafana's PostgreSQL macros gives the documented forms
(Grafana documentation, "PostgreSQL data source", Macros table)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.dashboards.grafana.grafana_sql import GrafanaRange, expand, parse_interval

# the documentation's example range: 2017-04-21T05:01:17Z to 05:06:17Z
RNG = GrafanaRange(
    datetime(2017, 4, 21, 5, 1, 17, tzinfo=UTC),
    datetime(2017, 4, 21, 5, 6, 17, tzinfo=UTC),
    timedelta(minutes=5),
)


@pytest.mark.parametrize(
    ("sql", "expanded"),
    [
        (
            "$__timeFilter(ts)",
            "ts BETWEEN '2017-04-21T05:01:17Z' AND '2017-04-21T05:06:17Z'",
        ),
        ("$__timeFrom()", "'2017-04-21T05:01:17Z'"),
        ("$__timeTo()", "'2017-04-21T05:06:17Z'"),
        ("$__time(ts)", 'ts AS "time"'),
        ("$__timeEpoch(ts)", 'extract(epoch from ts) AS "time"'),
        ("$__timeGroup(ts,'5m')", "(extract(epoch from ts)/300)::bigint*300"),
        (
            "$__timeGroupAlias(ts, $__interval)",
            '(extract(epoch from ts)/300)::bigint*300 AS "time"',
        ),
        ("$__timeGroup(ts, '1h', 0)", "(extract(epoch from ts)/3600)::bigint*3600"),
        ("$__unixEpochFilter(t)", "t >= 1492750877 AND t <= 1492751177"),
        ("$__unixEpochFrom() $__unixEpochTo()", "1492750877 1492751177"),
        ("$__unixEpochGroupAlias(t,'5m')", 'floor(t/300)*300 AS "time"'),
        ("$__interval_ms $__interval", "300000 5m"),
        (
            "$__timeFilter(coalesce(a, b))",
            "coalesce(a, b) BETWEEN '2017-04-21T05:01:17Z' AND '2017-04-21T05:06:17Z'",
        ),
    ],
)
def test_macros(sql: str, expanded: str) -> None:
    assert expand(sql, RNG, {}) == expanded


def test_multi_value_variables_are_quoted_and_joined() -> None:
    sql = "key IN ($device) AND line IN (${line}) AND x = [[device]]"
    out = expand(sql, RNG, {"device": ["grid_meter", "o'brien"], "line": ["line_a"]})
    assert out == (
        "key IN ('grid_meter','o''brien') AND line IN ('line_a') AND x = 'grid_meter','o''brien'"
    )


def test_leftovers_are_errors() -> None:
    with pytest.raises(ValueError, match=r"\$line"):
        expand("line IN ($line)", RNG, {})
    with pytest.raises(ValueError, match="unknown macro"):
        expand("$__nope(x)", RNG, {})


def test_intervals() -> None:
    assert parse_interval("15m") == timedelta(minutes=15)
    assert parse_interval("'1h'") == timedelta(hours=1)
    with pytest.raises(ValueError):
        parse_interval("1 hour")
