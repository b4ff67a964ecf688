"""Grafana's PostgreSQL macros and template variables, expanded as Grafana does before it
sends a panel's SQL to the database, so that the tests can run the dashboards' queries.

Reference: Grafana documentation, "PostgreSQL data source" (Grafana 11), section
*Macros* (https://grafana.com/docs/grafana/v11.6/datasources/postgres/query-editor/#macros),
whose table reads:

==================================  ==========================================================
``$__time(dateColumn)``             ``dateColumn AS "time"``
``$__timeEpoch(dateColumn)``        ``extract(epoch from dateColumn) AS "time"``
``$__timeFilter(dateColumn)``       ``dateColumn BETWEEN '2017-04-21T05:01:17Z' AND
                                    '2017-04-21T05:06:17Z'``
``$__timeFrom()``, ``$__timeTo()``  ``'2017-04-21T05:01:17Z'``
``$__timeGroup(dateColumn,'5m')``   ``(extract(epoch from dateColumn)/300)::bigint*300``
``$__timeGroupAlias(...)``          the same with ``AS "time"``
``$__unixEpochFilter(dateColumn)``  ``dateColumn >= 1494410783 AND dateColumn <= 1494497183``
``$__unixEpochFrom()``, ``To()``    ``1494410783``
``$__unixEpochGroup(col,'5m')``     ``floor(col/300)*300`` (and ``...Alias``: ``AS "time"``)
==================================  ==========================================================

and the global variables ``$__interval`` (the panel's bucket width, e.g. ``1m``) and
``$__interval_ms`` (the same in milliseconds). Template variables (``$name``,
``${name}``, ``[[name]]``) are replaced first; for SQL data sources a multi-value or
"All" variable becomes its values quoted and joined by commas, ``'a','b'`` (Grafana
documentation, "Templates and variables" / PostgreSQL "Multi-value variables"), the
same as a single value (``'a'``). Whatever ``$__`` macro or ``$variable`` is left is an
error here, as it would be a syntax error in the database.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

__all__ = ["GrafanaRange", "expand", "interval_text", "parse_interval"]

_UNITS_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}


def parse_interval(text: str) -> timedelta:
    """``'5m'`` -> 5 minutes (Grafana's interval notation: ms, s, m, h, d, w)."""
    m = re.fullmatch(r"\s*'?(\d+)(ms|s|m|h|d|w)'?\s*", text)
    if m is None:
        raise ValueError(f"not a Grafana interval: {text!r}")
    return timedelta(seconds=int(m.group(1)) * _UNITS_S[m.group(2)])


def interval_text(interval: timedelta) -> str:
    """5 minutes -> ``'5m'`` (the largest unit that divides it)."""
    ms = round(interval / timedelta(milliseconds=1))
    for unit, scale in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if ms % scale == 0:
            return f"{ms // scale}{unit}"
    return f"{ms}ms"


def _rfc3339(ts: datetime) -> str:
    ts = ts.astimezone(UTC)
    if ts.microsecond:
        return ts.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    return ts.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True, slots=True)
class GrafanaRange:
    """A panel's time range and bucket width, as Grafana gives them to the macros."""

    start: datetime  # aware
    end: datetime  # aware
    interval: timedelta  # $__interval

    @property
    def from_epoch_s(self) -> int:
        return int(self.start.timestamp())

    @property
    def to_epoch_s(self) -> int:
        return int(self.end.timestamp())


def _args(sql: str, open_at: int) -> tuple[list[str], int]:
    """The comma-separated arguments of the call whose ``(`` is at ``open_at`` and the
    index after its ``)``; nested parentheses and quoted strings are kept whole."""
    depth, quoted, args, current = 0, False, [], []
    i = open_at + 1
    while i < len(sql):
        c = sql[i]
        if quoted:
            current.append(c)
            if c == "'":
                quoted = False
        elif c == "'":
            quoted = True
            current.append(c)
        elif c == "(":
            depth += 1
            current.append(c)
        elif c == ")":
            if depth == 0:
                text = "".join(current).strip()
                if text or args:
                    args.append(text)
                return args, i + 1
            depth -= 1
            current.append(c)
        elif c == "," and depth == 0:
            args.append("".join(current).strip())
            current = []
        else:
            current.append(c)
        i += 1
    raise ValueError(f"unbalanced parentheses after position {open_at}")


def _macro(name: str, args: list[str], rng: GrafanaRange) -> str:
    def want(n: int) -> None:
        if len(args) < n:
            raise ValueError(f"${name} needs {n} argument(s), got {args}")

    start, end = _rfc3339(rng.start), _rfc3339(rng.end)
    if name == "__time":
        want(1)
        return f'{args[0]} AS "time"'
    if name == "__timeEpoch":
        want(1)
        return f'extract(epoch from {args[0]}) AS "time"'
    if name == "__timeFilter":
        want(1)
        return f"{args[0]} BETWEEN '{start}' AND '{end}'"
    if name == "__timeFrom":
        return f"'{start}'"
    if name == "__timeTo":
        return f"'{end}'"
    if name in ("__timeGroup", "__timeGroupAlias"):
        want(2)  # a third argument (fill) changes what Grafana does with the rows only
        n = int(parse_interval(args[1]).total_seconds())
        expr = f"(extract(epoch from {args[0]})/{n})::bigint*{n}"
        return expr + (' AS "time"' if name.endswith("Alias") else "")
    if name == "__unixEpochFilter":
        want(1)
        return f"{args[0]} >= {rng.from_epoch_s} AND {args[0]} <= {rng.to_epoch_s}"
    if name == "__unixEpochFrom":
        return str(rng.from_epoch_s)
    if name == "__unixEpochTo":
        return str(rng.to_epoch_s)
    if name in ("__unixEpochGroup", "__unixEpochGroupAlias"):
        want(2)
        n = int(parse_interval(args[1]).total_seconds())
        expr = f"floor({args[0]}/{n})*{n}"
        return expr + (' AS "time"' if name.endswith("Alias") else "")
    raise ValueError(f"unknown macro ${name}")


def _sql_values(values: Sequence[str]) -> str:
    if not values:
        raise ValueError("a template variable without a value")
    return ",".join("'" + v.replace("'", "''") + "'" for v in values)


def expand(sql: str, rng: GrafanaRange, variables: Mapping[str, Sequence[str]]) -> str:
    """``sql`` with the template variables, then the macros, replaced."""
    interval_ms = round(rng.interval / timedelta(milliseconds=1))
    out = sql.replace("$__interval_ms", str(interval_ms))
    out = out.replace("${__interval_ms}", str(interval_ms))
    out = re.sub(r"\$(__interval|\{__interval\})\b", interval_text(rng.interval), out)
    for name, values in variables.items():
        text = _sql_values(values)
        out = re.sub(rf"\$\{{{name}(:sqlstring)?\}}|\[\[{name}\]\]|\${name}\b", text, out)
    while (m := re.search(r"\$(__\w+)\s*\(", out)) is not None:
        args, end = _args(out, m.end() - 1)
        out = out[: m.start()] + _macro(m.group(1), args, rng) + out[end:]
    left = re.search(r"\$\{?\w+", out)
    if left is not None:
        raise ValueError(f"unexpanded variable or macro {left.group(0)!r} in:\n{out}")
    return out
