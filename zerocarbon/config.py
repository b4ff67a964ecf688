"""Site configuration: one TOML file -> validated, frozen models.

Any error stops start-up with a message that names the file, the path inside it
(``devices[3].port``) and the offending value. See ``examples/demo-site.toml`` for a
commented example of every key.
"""

from __future__ import annotations

import tomllib
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlparse
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from zerocarbon.carbon_engine.factors import grid_factors
from zerocarbon.metering.metrics import METRICS_BY_NAME
from zerocarbon.metering.profile import DeviceProfile, ProfileError, load_profile
from zerocarbon.validation import format_validation_errors


class SiteConfigError(ValueError):
    """The site file is missing or invalid. The message names path and value."""


class DeviceRole(StrEnum):
    GRID = "grid"  # the grid-connection (fiscal) meter
    PV = "pv"  # a PV inverter
    BATTERY = "battery"  # a battery / microgrid controller
    LOAD = "load"  # a sub-meter of a production line or building
    PRODUCTION = "production"  # a production-output counter


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SiteInfo(_Frozen):
    name: str = "factory"
    timezone: str = "UTC"  # IANA name; used to show "today" and local hours

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown IANA timezone {value!r}") from None
        return value


class GridConfig(_Frozen):
    """Where the site's grid electricity comes from, for Scope 2 factors."""

    region: str = "national"  # MEE regional grid or "national"
    data_year: int = 2023  # MEE factor data year
    location_factor_kg_per_kwh: float | None = Field(default=None, ge=0)  # override
    market_factor_kg_per_kwh: float | None = Field(default=None, ge=0)  # override

    @model_validator(mode="after")
    def _factors_exist(self) -> GridConfig:
        try:
            grid_factors(
                self.region,
                self.data_year,
                self.location_factor_kg_per_kwh,
                self.market_factor_kg_per_kwh,
            )
        except KeyError as exc:
            raise ValueError(str(exc.args[0])) from None
        return self


class MqttConfig(_Frozen):
    url: str = "mqtt://127.0.0.1:1883"
    qos: Literal[0, 1] = 1
    client_id: str | None = None

    @field_validator("url")
    @classmethod
    def _valid_url(cls, value: str) -> str:
        parsed = urlparse(value)
        if parsed.scheme != "mqtt" or not parsed.hostname:
            raise ValueError("must look like mqtt://host:port")
        return value

    @property
    def host(self) -> str:
        return urlparse(self.url).hostname or "127.0.0.1"

    @property
    def port(self) -> int:
        return urlparse(self.url).port or 1883


class _DeviceBase(_Frozen):
    id: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_\-]{0,62}$")]
    name: str = ""
    role: DeviceRole
    line: str | None = None  # production line this device belongs to
    rated_power_kw: float | None = Field(default=None, gt=0)


class ModbusTcpDevice(_DeviceBase):
    protocol: Literal["modbus_tcp"]
    profile: str  # bundled profile name or path to a profile TOML (relative to the site file)
    host: str = "127.0.0.1"
    port: int = Field(default=502, ge=1, le=65535)
    device_id: int = Field(default=1, ge=0, le=255)  # Modbus unit identifier
    poll_interval_s: float = Field(default=1.0, gt=0)
    timeout_s: float = Field(default=1.0, gt=0)
    max_gap_registers: int = Field(default=10, ge=0, le=125)  # read planner gap fill limit

    @field_validator("profile")
    @classmethod
    def _profile_loads(cls, value: str, info: ValidationInfo) -> str:
        base_dir = (info.context or {}).get("base_dir")
        try:
            load_profile(value, base_dir)
        except ProfileError as exc:
            raise ValueError(str(exc)) from None
        return value

    def load_profile(self, base_dir: Path | None = None) -> DeviceProfile:
        return load_profile(self.profile, base_dir)

    @property
    def endpoint(self) -> tuple[str, int]:
        return (self.host, self.port)


class MqttDevice(_DeviceBase):
    protocol: Literal["mqtt"]
    topic: str  # exact topic the device publishes JSON to
    fields: dict[str, str]  # JSON key -> metric name
    ts_field: str | None = "ts"  # JSON key of the timestamp (ISO 8601 or POSIX s); None: arrival

    @field_validator("topic")
    @classmethod
    def _plain_topic(cls, value: str) -> str:
        if not value or any(c in value for c in "#+"):
            raise ValueError("must be a non-empty topic without wildcards")
        return value

    @field_validator("fields")
    @classmethod
    def _known_metrics(cls, value: dict[str, str]) -> dict[str, str]:
        if not value:
            raise ValueError("must map at least one JSON key to a metric")
        for key, name in value.items():
            if name not in METRICS_BY_NAME:
                known = ", ".join(sorted(METRICS_BY_NAME))
                raise ValueError(f"key {key!r}: unknown metric {name!r}; known: {known}")
        return value


Device = Annotated[ModbusTcpDevice | MqttDevice, Field(discriminator="protocol")]


class SimulationConfig(_Frozen):
    """Parameters of the simulated plant (only the simulators read these)."""

    seed: int = 42
    latitude_deg: float = Field(default=31.2, ge=-90, le=90)
    longitude_deg: float = Field(default=121.5, ge=-180, le=180)
    base_load_kw: float = Field(default=150.0, ge=0)  # unmetered utilities load
    cloudiness: float = Field(default=0.3, ge=0, le=1)  # 0 clear sky .. 1 overcast
    battery_capacity_kwh: float = Field(default=500.0, gt=0)
    initial_soc_pct: float = Field(default=50.0, ge=0, le=100)
    units_per_kwh: float = Field(default=2.0, gt=0)  # production output per line kWh
    tick_s: float = Field(default=5.0, gt=0)  # simulated seconds per physics step
    publish_interval_s: float = Field(default=10.0, gt=0)  # MQTT publish period [sim s]


class SiteConfig(_Frozen):
    site: SiteInfo = SiteInfo()
    grid: GridConfig = GridConfig()
    mqtt: MqttConfig | None = None
    devices: tuple[Device, ...]
    simulation: SimulationConfig = SimulationConfig()
    base_dir: Path | None = Field(default=None, exclude=True)  # folder of the site file

    @model_validator(mode="after")
    def _consistent(self) -> SiteConfig:
        seen: dict[str, int] = {}
        for i, device in enumerate(self.devices):
            if device.id in seen:
                raise ValueError(
                    f"devices[{i}].id: {device.id!r} already used by devices[{seen[device.id]}]"
                )
            seen[device.id] = i
        grids = [d.id for d in self.devices if d.role is DeviceRole.GRID]
        if len(grids) != 1:
            raise ValueError(f"exactly one device must have role 'grid', found {grids}")
        if self.mqtt is None and any(isinstance(d, MqttDevice) for d in self.devices):
            raise ValueError("MQTT devices are configured but there is no [mqtt] section")
        units: dict[tuple[str, int, int], str] = {}
        for d in self.modbus_devices:
            key = (d.host, d.port, d.device_id)
            if key in units:
                raise ValueError(
                    f"devices {units[key]!r} and {d.id!r} share "
                    f"{d.host}:{d.port} unit {d.device_id}"
                )
            units[key] = d.id
        return self

    @property
    def modbus_devices(self) -> tuple[ModbusTcpDevice, ...]:
        return tuple(d for d in self.devices if isinstance(d, ModbusTcpDevice))

    @property
    def mqtt_devices(self) -> tuple[MqttDevice, ...]:
        return tuple(d for d in self.devices if isinstance(d, MqttDevice))

    def device(self, device_id: str) -> ModbusTcpDevice | MqttDevice:
        for d in self.devices:
            if d.id == device_id:
                return d
        raise KeyError(f"no device {device_id!r} in the site config")

    def devices_with_role(self, role: DeviceRole) -> tuple[ModbusTcpDevice | MqttDevice, ...]:
        return tuple(d for d in self.devices if d.role is role)

    def profile_of(self, device: ModbusTcpDevice) -> DeviceProfile:
        return device.load_profile(self.base_dir)


def parse_site(
    data: dict[str, Any], source: str = "<site>", base_dir: Path | None = None
) -> SiteConfig:
    """Validate a parsed site document; raise :class:`SiteConfigError` naming every problem."""
    try:
        return SiteConfig.model_validate(
            {**data, "base_dir": base_dir}, context={"base_dir": base_dir}
        )
    except ValidationError as exc:
        raise SiteConfigError(format_validation_errors(source, exc)) from None


def load_site(path: str | Path) -> SiteConfig:
    """Load and validate a site TOML file."""
    path = Path(path)
    if not path.is_file():
        raise SiteConfigError(f"site file {path} not found")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise SiteConfigError(f"{path}: invalid TOML: {exc}") from None
    return parse_site(data, str(path), path.resolve().parent)
