"""Secrets named in configuration files, read from the environment.

A site or center file never holds a password: a ``*_env`` key names the environment
variable that does (``mqtt.password_env``, ``uplink.password_env``,
``center.nats_password_env``).
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["ENV_NAME_PATTERN", "secret_from_env"]

ENV_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"  # what a *_env key may name


def secret_from_env(environ: Mapping[str, str], variable: str | None, key: str) -> str | None:
    """The value of ``variable`` in ``environ`` (None when no variable is configured);
    an unset variable is a :class:`ValueError` naming the file's ``key`` and it."""
    if variable is None:
        return None
    value = environ.get(variable)
    if value is None:
        raise ValueError(f"{key}: environment variable {variable} is not set")
    return value
