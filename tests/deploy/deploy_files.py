"""The deployment files read the way Docker Compose, Mosquitto and systemd read them,
for the deploy tests: compose files with their ``${VAR}`` interpolation resolved from
``.env.example``, short-syntax volume entries, Mosquitto's ``key value`` settings per
listener, and systemd unit files."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
BASE_COMPOSE = ROOT / "docker-compose.yml"
DEMO_COMPOSE = ROOT / "docker-compose.demo.yml"
ENV_EXAMPLE = ROOT / ".env.example"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
COMPOSE_MOSQUITTO_CONF = ROOT / "deploy" / "mosquitto" / "compose.conf"
DEMO_SITE_FILE = ROOT / "deploy" / "demo" / "site.toml"
EXAMPLE_DEMO_SITE = ROOT / "examples" / "demo-site.toml"
SYSTEMD_UNIT = ROOT / "deploy" / "systemd" / "zerocarbon.service"
SYSTEMD_ENV = ROOT / "deploy" / "systemd" / "zerocarbon.env"
DEPLOY_DOC = ROOT / "docs" / "deploy.md"

# Host paths the compose files mount that the operator creates at first start (never
# committed: they hold secrets); docs/deploy.md says how.
OPERATOR_CREATED = frozenset({"deploy/mosquitto/passwd"})

# ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?message}, ${VAR?message}; $$ escapes
_INTERPOLATION = re.compile(
    r"(?<!\$)\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}"
)


def load_yaml(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict), f"{path}: not a YAML mapping"
    return data


def interpolated_names(text: str) -> set[str]:
    """Names of the variables a compose file interpolates (``$$`` is a literal ``$``)."""
    return {m.group("name") for m in _INTERPOLATION.finditer(text)}


def read_env_file(path: Path) -> dict[str, str]:
    """``VAR=value`` lines of an env file (compose's ``--env-file`` format)."""
    values: dict[str, str] = {}
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, value = line.partition("=")
        assert sep and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name), (
            f"{path}:{number}: not VAR=value: {raw!r}"
        )
        values[name] = value
    return values


def interpolate(value: str, env: dict[str, str]) -> str:
    """``value`` with each ``${VAR...}`` replaced as Compose does (``$$`` -> ``$``)."""

    def one(m: re.Match[str]) -> str:
        name, op, arg = m.group("name"), m.group("op"), m.group("arg")
        current = env.get(name)
        if op in (":-", ":?") and not current:
            current = None
        if current is None:
            if op in (":-", "-"):
                return arg or ""
            raise KeyError(f"${{{name}}} is unset: {arg}" if op else f"${{{name}}} is unset")
        return current

    return _INTERPOLATION.sub(one, value).replace("$$", "$")


@dataclass(frozen=True, slots=True)
class Mount:
    """One short-syntax volume entry: ``source:target[:mode]``."""

    service: str
    source: str  # as written (interpolation resolved)
    target: str
    read_only: bool

    @property
    def is_bind(self) -> bool:
        return self.source.startswith((".", "/", "~"))


def service_mounts(services: dict[str, Any], env: dict[str, str]) -> list[Mount]:
    mounts = []
    for name, service in services.items():
        for entry in service.get("volumes", []):
            assert isinstance(entry, str), f"{name}: use the short volume syntax"
            source, target, *mode = interpolate(entry, env).split(":")
            mounts.append(Mount(name, source, target, "ro" in mode))
    return mounts


# Settings that belong to the listener above them with per_listener_settings true
# (mosquitto.conf(5), "Listeners" and "per_listener_settings"); others are general
# wherever they are written.
LISTENER_SETTINGS = frozenset(
    {
        "acl_file",
        "allow_anonymous",
        "auth_plugin",
        "bind_interface",
        "cafile",
        "certfile",
        "keyfile",
        "max_connections",
        "mount_point",
        "password_file",
        "plugin",
        "protocol",
        "psk_file",
        "require_certificate",
        "socket_domain",
        "use_identity_as_username",
    }
)


def mosquitto_listeners(text: str) -> dict[int, dict[str, str]]:
    """Per listener port, its own settings (Mosquitto's ``per_listener_settings``);
    general settings are under port 0."""
    listeners: dict[int, dict[str, str]] = {0: {}}
    current = 0
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        key, _, value = line.partition(" ")
        assert re.fullmatch(r"[a-z_]+", key), f"line {number}: not a setting: {raw!r}"
        if key == "listener":
            current = int(value.split()[0])
            listeners[current] = {}
            continue
        listeners[current if key in LISTENER_SETTINGS else 0][key] = value.strip()
    return listeners


def unit_settings(text: str) -> dict[str, dict[str, list[str]]]:
    """A systemd unit as section -> key -> values (a key may repeat)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        key, sep, value = line.partition("=")
        assert current is not None and sep, f"line {number}: {raw!r}"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections
