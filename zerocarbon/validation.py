"""One way to report validation errors of a configuration file."""

from __future__ import annotations

from pydantic import ValidationError

# Tags of discriminated unions (device protocols): they add nothing to a path for a user.
_UNION_TAGS = frozenset({"modbus_tcp", "modbus_rtu", "mqtt", "dlt645"})


def format_validation_errors(source: str, exc: ValidationError) -> str:
    """One line per error: ``file: path.to[3].key: message (got value)``.

    The offending value is shown for field errors; for errors of a model's own checks
    (whose message already names what is wrong) it is left out.
    """
    lines = []
    for err in exc.errors():
        parts: list[str] = []
        for p in err["loc"]:
            if isinstance(p, int):
                parts.append(f"[{p}]")
            elif p not in _UNION_TAGS:
                parts.append(("." if parts else "") + str(p))
        where = f"{source}: {''.join(parts)}" if parts else source
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] in ("value_error", "assertion_error"):
            lines.append(f"{where}: {msg}")
        else:
            lines.append(f"{where}: {msg} (got {err.get('input')!r})")
    return "\n".join(lines)
