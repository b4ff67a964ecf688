"""Site configuration: one TOML file -> validated, frozen models.

Any error stops start-up with a message that names the file, the path inside it
(``devices[3].port``) and the offending value. See ``examples/demo-site.toml`` for a
commented example of every key.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from datetime import datetime
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

from zerocarbon.config_accounts import AccountsConfig, check_accounts
from zerocarbon.config_ledger import OffsetConfig, check_offsets
from zerocarbon.config_tariff import TariffConfig, check_tariff
from zerocarbon.config_uplink import UplinkConfig
from zerocarbon.env_secret import ENV_NAME_PATTERN, secret_from_env
from zerocarbon.metering.dlt645 import DEFAULT_IDENTIFIERS, METRIC_OF_IDENTIFIER, metric_of
from zerocarbon.metering.metrics import METRICS_BY_NAME
from zerocarbon.metering.profile import DeviceProfile, ProfileError, load_profile
from zerocarbon.metering.registers import RegisterType
from zerocarbon.validation import format_validation_errors


class SiteConfigError(ValueError):
    """The site file is missing or invalid. The message names path and value."""


class DeviceRole(StrEnum):
    GRID = "grid"  # the grid-connection (fiscal) meter
    PV = "pv"  # a PV inverter
    BATTERY = "battery"  # a battery / microgrid controller
    LOAD = "load"  # a sub-meter of a production line or building
    PRODUCTION = "production"  # a production-output counter
    WIND = "wind"  # an on-site wind turbine (generation)
    FUEL = "fuel"  # a fuel meter (natural gas, diesel, ...): Scope 1
    # a sensor of conditions (outdoor temperature, ...): no energy; its readings feed
    # alert rules, e.g. a drift rule's relevant variables
    SENSOR = "sensor"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SiteInfo(_Frozen):
    name: str = "factory"
    timezone: str = "UTC"  # IANA name; used to show "today" and local hours
    # the live page's language (switchable on the page): "zh-CN" or "en"
    language: Literal["zh-CN", "en"] = "zh-CN"

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown IANA timezone {value!r}") from None
        return value


class GridConfig(_Frozen):
    """Where the site's grid electricity comes from, for Scope 2 factors.

    Whether ``region``/``province``/``data_year`` name a published factor is checked
    by :func:`zerocarbon.carbon_engine.factors.resolve_grid_factors` at start-up and by
    ``zerocarbon check-config`` (config does not depend on the engine's data).
    """

    region: str = "national"  # MEE regional grid or "national"
    province: str | None = None  # MEE provincial factor where published (overrides region)
    data_year: int = 2023  # MEE factor data year
    location_factor_kg_per_kwh: float | None = Field(default=None, ge=0)  # override
    market_factor_kg_per_kwh: float | None = Field(default=None, ge=0)  # override
    # optional hourly grid-intensity series (CSV: hour_start,location_kg_per_kwh[,market..])
    hourly_factors_csv: str | None = None  # path, relative to the site file
    # the maximum demand in the supply contract, the figure a two-part tariff bills the
    # capacity charge on (the ``demand`` alert rule compares the 15-min demand with it)
    contracted_demand_kw: float | None = Field(default=None, gt=0)


class FuelConfig(_Frozen):
    """Per-site overrides of a fuel's GB/T 32150 parameters ([fuels.<name>])."""

    ncv_gj_per_unit: float | None = Field(default=None, gt=0)  # net calorific value
    carbon_content_tc_per_gj: float | None = Field(default=None, gt=0)  # t C per GJ
    oxidation_rate: float | None = Field(default=None, gt=0, le=1)  # fraction oxidised
    density_kg_per_l: float | None = Field(default=None, gt=0)  # liquid fuels metered in l


class LineConfig(_Frozen):
    """A production line: its sub-meters and output counters are the devices whose
    ``line`` names it ([[lines]])."""

    id: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_\-]{0,62}$")]
    name: str = ""
    product: str = ""  # what one unit of output is, e.g. "stamped panel"
    unit: str = "units"  # unit of output, e.g. "pcs", "t"


_MONTH = r"^\d{4}-(0[1-9]|1[0-2])$"


class GreenPowerContract(_Frozen):
    """A green-power purchase (green electricity trade / PPA) ([[green_power]]).

    Volumes are delivered grid electricity [kWh] that is carbon-free for market-based
    Scope 2: either monthly totals (``monthly_kwh = { "2026-06" = 120000 }``), allocated to
    the month's hours by the engine, or an hourly series (``hourly_csv``: hour_start,kwh).
    """

    id: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_\-]{0,62}$")]
    name: str = ""
    monthly_kwh: dict[Annotated[str, Field(pattern=_MONTH)], Annotated[float, Field(ge=0)]] = Field(
        default_factory=dict
    )
    hourly_csv: str | None = None  # path, relative to the site file

    @model_validator(mode="after")
    def _one_source(self) -> GreenPowerContract:
        if bool(self.monthly_kwh) == (self.hourly_csv is not None):
            raise ValueError("give exactly one of monthly_kwh or hourly_csv")
        return self


class CertificateBatch(_Frozen):
    """Green electricity certificates (GEC) retired by the site ([[certificates]]).

    1 GEC = 1 MWh (NDRC/MOF/NEA notice of 2023). ``issued`` is the month the energy was
    generated (certificates are issued monthly and valid for two years); ``applies_to``
    the consumption month they are retired against.
    """

    id: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_\-]{0,62}$")]
    count: int = Field(gt=0)  # certificates = MWh
    issued: Annotated[str, Field(pattern=_MONTH)]
    applies_to: Annotated[str, Field(pattern=_MONTH)]

    @model_validator(mode="after")
    def _valid_when_used(self) -> CertificateBatch:
        iy, im = (int(x) for x in self.issued.split("-"))
        ay, am = (int(x) for x in self.applies_to.split("-"))
        months = (ay - iy) * 12 + (am - im)
        if not 0 <= months < 24:
            raise ValueError(
                f"applies_to {self.applies_to} is not within the two years a certificate "
                f"issued {self.issued} is valid"
            )
        return self


class IngestConfig(_Frozen):
    """Which reading times are accepted ([ingest]). Readings outside
    [now - accept_past_h, now + accept_future_s] (gateway clock) are rejected and counted."""

    accept_past_h: float = Field(default=720.0, gt=0)  # how far back data may arrive [h]
    accept_future_s: float = Field(default=300.0, ge=0)  # clock skew allowed ahead [s]


class SpoolConfig(_Frozen):
    """The store-and-forward spool ([storage.spool]): every admitted batch is written here
    first (and acknowledged to the collectors once there), then forwarded to the database
    in order; it fills while the database is down or slower than ingest."""

    dir: str | None = None  # None: <data dir>/spool; a relative path is to the site file
    segment_mib: int = Field(default=64, ge=1, le=4096)  # size of one segment file [MiB]
    quota_mib: int = Field(default=2048, ge=1)  # disk the spool may use [MiB]
    alarm_percent: float = Field(default=80.0, gt=0, le=100)  # alarm above this use [%]
    # "always": fsync every appended batch before it is acknowledged (survives a power
    # cut); "interval": fsync at most every fsync_interval_s (survives a process crash);
    # "never": leave it to the operating system
    fsync: Literal["always", "interval", "never"] = "always"
    fsync_interval_s: float = Field(default=1.0, gt=0)  # with fsync = "interval" [s]


class StorageConfig(_Frozen):
    """How readings are kept ([storage]). With TimescaleDB, ``readings`` is a hypertable
    with compression and retention policies; without it, native daily range partitions
    are created ahead and dropped by retention."""

    retention_days: int | None = Field(default=None, ge=1)  # raw readings kept; None: all
    compress_after_days: int = Field(default=7, ge=1)  # TimescaleDB: compress older chunks
    chunk_interval_h: float | None = Field(default=None, gt=0)  # None: from the ingest rate
    partitions_ahead_days: int = Field(default=3, ge=1)  # plain PostgreSQL: days made ahead
    spool: SpoolConfig = SpoolConfig()


class AccountingConfig(_Frozen):
    """Data-quality checks of the hourly balance ([accounting])."""

    submeter_tolerance_pct: float = Field(default=5.0, ge=0)  # sub-meters vs their main meter


class MqttConfig(_Frozen):
    url: str = "mqtt://127.0.0.1:1883"
    qos: Literal[0, 1] = 1
    client_id: str | None = None
    # a broker that needs a login (allow_anonymous false): the user name, and the NAME
    # of the environment variable holding the password (the site file holds no secret)
    username: str | None = None
    password_env: Annotated[str, Field(pattern=ENV_NAME_PATTERN)] | None = None

    def password(self, environ: Mapping[str, str]) -> str | None:
        """The broker password from ``environ`` (None: no password configured); an
        unset variable is a :class:`ValueError` naming it."""
        return secret_from_env(environ, self.password_env, "mqtt.password_env")

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
    parent: str | None = None  # id of the meter this one is a sub-meter of
    fuel: str | None = None  # role "fuel": fuel name (GB/T 32150 table or [fuels.<name>])
    gap_s: float | None = Field(default=None, gt=0)  # longer silence = a gap (estimated)

    @model_validator(mode="after")
    def _fuel_only_for_fuel_meters(self) -> _DeviceBase:
        if (self.role is DeviceRole.FUEL) != (self.fuel is not None):
            raise ValueError("a device has `fuel` exactly when its role is 'fuel'")
        return self


class _ModbusDevice(_DeviceBase):
    """What Modbus TCP and RTU devices share: the profile (with this installation's
    transformer ratios), polling and retries."""

    profile: str  # bundled profile name or path to a profile TOML (relative to the site file)
    poll_interval_s: float = Field(default=1.0, gt=0)
    timeout_s: float = Field(default=1.0, gt=0)  # one answer [s]
    max_gap_registers: int = Field(default=10, ge=0, le=125)  # read planner gap fill limit
    retries: int = Field(default=1, ge=0, le=10)  # extra sends of a request that timed out
    # link property (every device on one link must agree): the pause before each
    # request [s] (on a serial line: beyond its 3.5 characters), for slow gateways/units
    request_gap_s: float = Field(default=0.0, ge=0, le=10)
    # this installation's instrument transformers (replace the profile's; see profile.py)
    pt_ratio: float | None = Field(default=None, gt=0)  # e.g. 10000 V / 100 V -> 100
    ct_ratio: float | None = Field(default=None, gt=0)  # e.g. 600 A / 5 A -> 120

    @field_validator("profile")
    @classmethod
    def _profile_loads(cls, value: str, info: ValidationInfo) -> str:
        try:
            load_profile(value, (info.context or {}).get("base_dir"))
        except ProfileError as exc:
            raise ValueError(str(exc)) from None
        return value

    def load_profile(self, base_dir: Path | None = None) -> DeviceProfile:
        """The profile with this device's PT/CT ratios (when it gives them)."""
        profile = load_profile(self.profile, base_dir)
        if self.pt_ratio is None and self.ct_ratio is None:
            return profile
        return profile.with_ratios(pt_ratio=self.pt_ratio, ct_ratio=self.ct_ratio)


class ModbusTcpDevice(_ModbusDevice):
    protocol: Literal["modbus_tcp"]
    host: Annotated[str, Field(min_length=1)]  # required: no silent default to this machine
    port: int = Field(default=502, ge=1, le=65535)
    device_id: int = Field(default=1, ge=0, le=255)  # Modbus unit identifier
    # link property (every device on one host:port must agree): requests outstanding
    # at once (1: one at a time; more only for gateways that take a window of MBAP
    # transaction ids)
    max_in_flight: int = Field(default=1, ge=1, le=64)

    @property
    def endpoint(self) -> tuple[str, int]:
        return (self.host, self.port)


class _SerialLine(_Frozen):
    """Settings of a serial line (RS-485); every device on one ``serial_port`` must
    give the same ones (checked by :class:`SiteConfig`)."""

    baudrate: int = Field(default=9600, gt=0, le=4_000_000)  # [bit/s]
    bytesize: Literal[7, 8] = 8  # data bits
    parity: Literal["N", "E", "O"] = "E"  # none, even, odd
    stopbits: Literal[1, 2] = 1

    @property
    def line_settings(self) -> tuple[int, int, str, int]:
        """(baudrate, bytesize, parity, stopbits)."""
        return (self.baudrate, self.bytesize, self.parity, self.stopbits)


class ModbusRtuDevice(_ModbusDevice, _SerialLine):
    """A Modbus RTU unit on an RS-485 line at ``serial_port``; the units of one port
    share it, one request at a time. Line defaults 9600 baud, 8 data bits, even parity,
    1 stop bit (Modbus over Serial Line V1.02, 2.5.1: even parity is the default)."""

    protocol: Literal["modbus_rtu"]
    serial_port: Annotated[str, Field(min_length=1)]  # e.g. /dev/ttyUSB0
    device_id: int = Field(default=1, ge=1, le=247)  # unit address (V1.02, 2.2: 1..247)

    @property
    def link(self) -> str:
        """The serial port: one scheduler per port."""
        return self.serial_port


ModbusDevice = ModbusTcpDevice | ModbusRtuDevice


class Dlt645Device(_DeviceBase, _SerialLine):
    """A DL/T 645-2007 meter on an RS-485 line, reached either through a transparent
    serial-to-TCP gateway (``host`` and ``port``: raw frames over TCP) or on a local
    serial port (``serial_port`` with the line settings); exactly one of the two.
    Several meters may share one gateway or port. Line defaults 2400 baud, 8 data bits,
    even parity, 1 stop bit: DL/T 645-2007's character format and default rate."""

    protocol: Literal["dlt645"]
    host: Annotated[str, Field(min_length=1)] | None = None  # the gateway's address
    # the gateway's TCP port (required with host: there is no standard one)
    port: int | None = Field(default=None, ge=1, le=65535, validate_default=True)
    serial_port: Annotated[str, Field(min_length=1)] | None = Field(
        default=None, validate_default=True
    )
    baudrate: int = Field(default=2400, gt=0, le=4_000_000)  # [bit/s], with serial_port
    # meter address as printed on it: 12 digits; "AA" pairs are wildcards (one meter a line)
    address: Annotated[str, Field(pattern=r"^([0-9]{2}|[Aa]{2}){6}$")]
    poll_interval_s: float = Field(default=10.0, gt=0)
    timeout_s: float = Field(default=1.0, gt=0)  # one reply [s]
    # data identifiers to read, 8 hex digits (DL/T 645-2007 附录A); empty: the defaults
    identifiers: tuple[Annotated[str, Field(pattern=r"^[0-9A-Fa-f]{8}$")], ...] = ()

    @field_validator("identifiers")
    @classmethod
    def _known_identifiers(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        known = {f"{d:08X}" for d in METRIC_OF_IDENTIFIER}
        unknown = [v for v in value if v.upper() not in known]
        if unknown:
            raise ValueError(f"unknown data identifiers {unknown}; known: {sorted(known)}")
        return value

    @field_validator("port")
    @classmethod
    def _port_with_host(cls, value: int | None, info: ValidationInfo) -> int | None:
        if value is None and info.data.get("host") is not None:
            raise ValueError("required with host (the gateway's TCP port)")
        return value

    @field_validator("serial_port")
    @classmethod
    def _one_way(cls, value: str | None, info: ValidationInfo) -> str | None:
        tcp = info.data.get("host") is not None or info.data.get("port") is not None
        if value is not None and tcp:
            raise ValueError("give either host and port (a TCP gateway) or serial_port, not both")
        if value is None and not tcp and "host" in info.data:
            raise ValueError("give host and port (a TCP gateway) or serial_port (a local line)")
        return value

    @property
    def endpoint(self) -> tuple[str, int]:
        """The gateway's (host, port); only for a meter behind a TCP gateway."""
        if self.host is None or self.port is None:
            raise ValueError(f"DL/T 645 meter {self.id!r} is on serial port {self.serial_port}")
        return (self.host, self.port)

    @property
    def link(self) -> str:
        """``host:port`` of the gateway or the serial port: one collector per link."""
        return self.serial_port or f"{self.host}:{self.port}"

    def data_ids(self) -> tuple[int, ...]:
        """The identifiers to read (the defaults when the site file names none)."""
        return tuple(int(v, 16) for v in self.identifiers) or DEFAULT_IDENTIFIERS

    def metrics(self) -> tuple[str, ...]:
        """The metrics its identifiers carry."""
        return tuple(dict.fromkeys(metric_of(d) for d in self.data_ids()))


class MqttField(_Frozen):
    """A JSON key's metric, with the counter register behind it when the device
    forwards a Modbus counter (its wrap value is derived from type and scale)."""

    metric: str
    type: RegisterType | None = None  # register the device reads the counter from
    scale: float = Field(default=1.0, gt=0)  # value = register x scale


MAX_JSON_PATH_STEPS = 32  # keys and indexes in one JSON path (payloads nest far less)


def split_json_path(text: str) -> tuple[str | int, ...]:
    """Steps of a JSON path: keys joined by ``.``, list indexes in brackets.

    ``"ENERGY.Total"`` -> ``("ENERGY", "Total")``; ``"emeters[0].power"`` ->
    ``("emeters", 0, "power")``. A key is any text without ``.``, ``[`` or ``]``
    (``"switch:0"`` is one key). No expressions, no wildcards: a path names one value.
    :class:`ValueError` says what is wrong and where.
    """
    steps: list[str | int] = []
    for part in text.split("."):
        key, bracket, rest = part.partition("[")
        if not key or "]" in key:
            raise ValueError(f"JSON path {text!r}: empty or malformed key in {part!r}")
        steps.append(key)
        while bracket:
            index, close, rest = rest.partition("]")
            if not close or not index.isdigit() or not index.isascii():
                raise ValueError(f"JSON path {text!r}: list index must be [digits] in {part!r}")
            steps.append(int(index))
            if rest and not rest.startswith("["):
                raise ValueError(f"JSON path {text!r}: {rest!r} after an index needs a '.'")
            bracket, rest = rest[:1], rest[1:]
    if len(steps) > MAX_JSON_PATH_STEPS:
        raise ValueError(f"JSON path {text!r}: more than {MAX_JSON_PATH_STEPS} steps")
    return tuple(steps)


DEVICE_CAPTURE = "{device}"  # a topic level that is a configured device's id


def check_topic_filter(value: str) -> str:
    """An MQTT topic filter (MQTT 3.1.1 §4.7): ``+`` is one whole level, ``#`` the whole
    last level; ``{device}`` is a ``+`` level whose text must be a device's id."""
    if not value:
        raise ValueError("topic must not be empty")
    levels = value.split("/")
    for i, level in enumerate(levels):
        if level == "#" and i != len(levels) - 1:
            raise ValueError(f"topic {value!r}: '#' must be the last level")
        if level not in ("+", "#", DEVICE_CAPTURE) and any(c in level for c in "+#{}"):
            raise ValueError(
                f"topic {value!r}: level {level!r}: '+', '#' and {DEVICE_CAPTURE} "
                "must each be a whole level"
            )
    if levels.count(DEVICE_CAPTURE) > 1:
        raise ValueError(f"topic {value!r}: {DEVICE_CAPTURE} may appear once")
    return value


class MqttRule(_Frozen):
    """One value in a device's messages ([[devices.rules]]): where it is and what it is.

    A JSON device's rule gives ``path`` (and ``topic`` unless the device's applies); a
    Sparkplug B device's rule gives ``name``, the Sparkplug metric name.
    """

    topic: str | None = None  # topic filter of the message; None: the device's topic
    path: str | None = None  # JSON path, e.g. "ENERGY.Total", "emeters[0].power"
    name: str | None = None  # Sparkplug B metric name, e.g. "Meter/Active Power"
    metric: str  # our metric (see zerocarbon.metering.metrics)
    scale: float = 1.0  # metric value = payload value x scale (0.001: W -> kW, Wh -> kWh)
    unit: str = ""  # the payload's unit, a note for readers ("W", "Wh")
    type: RegisterType | None = None  # counter register behind the raw value (wrap = span x scale)

    @field_validator("topic")
    @classmethod
    def _topic_filter(cls, value: str | None) -> str | None:
        return None if value is None else check_topic_filter(value)

    @field_validator("path")
    @classmethod
    def _json_path(cls, value: str | None) -> str | None:
        if value is not None:
            split_json_path(value)
        return value

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, value: str) -> str:
        if value not in METRICS_BY_NAME:
            raise ValueError(
                f"unknown metric {value!r}; known: {', '.join(sorted(METRICS_BY_NAME))}"
            )
        return value

    @field_validator("scale")
    @classmethod
    def _nonzero_scale(cls, value: float) -> float:
        if value == 0 or value != value or value in (float("inf"), float("-inf")):
            raise ValueError("must be a finite number other than 0")
        return value

    @model_validator(mode="after")
    def _counter_scale(self) -> MqttRule:
        if self.type is not None and self.scale <= 0:
            raise ValueError("scale: a counter register's scale must be > 0")
        return self


class MqttPreset(_Frozen):
    """A device family's MQTT messages as rules; ``{prefix}`` in a topic is the
    device's own topic (``prefix``), by default its id (``{device}``)."""

    rules: tuple[MqttRule, ...]
    ts_path: str | None  # JSON path of the time the values stand for; None: arrival time
    local_time: bool = False  # its times carry no UTC offset: they are the site's local time
    interval_s: float | None = None  # its default publish interval [s] (device interval_s)


def _preset_rule(**values: Any) -> MqttRule:
    """A preset's rule: its topic holds ``{prefix}``, replaced per device before use."""
    return MqttRule.model_construct(**values)


MQTT_PRESETS: dict[str, MqttPreset] = {
    # Tasmota energy monitoring, telemetry every TelePeriod on tele/<Topic>/SENSOR:
    # {"Time": "2026-11-25T21:00:00", "ENERGY": {"Total": kWh, "Power": W,
    # "Voltage": V, "Current": A, ...}}; "Time" is local time without an offset unless
    # SetOption52 1 adds one (tasmota.github.io/docs/Commands/#setoption52, Timezone and
    # /docs/MQTT/). Current [A] has no metric here and is not read. TelePeriod, the
    # telemetry interval, defaults to 300 s (10..3600; /docs/Commands/#teleperiod).
    "tasmota": MqttPreset(
        rules=(
            _preset_rule(
                topic="tele/{prefix}/SENSOR",
                path="ENERGY.Total",
                metric="energy_import_kwh",
                unit="kWh",
            ),
            _preset_rule(
                topic="tele/{prefix}/SENSOR",
                path="ENERGY.Power",
                metric="active_power_kw",
                scale=0.001,
                unit="W",
            ),
            _preset_rule(
                topic="tele/{prefix}/SENSOR", path="ENERGY.Voltage", metric="voltage_v", unit="V"
            ),
        ),
        ts_path="Time",
        local_time=True,
        interval_s=300.0,
    ),
    # Shelly Gen2+ switch with metering (Plus 1PM, Pro 4PM, ...), status_ntf on: the
    # whole status of switch:0 on <topic_prefix>/status/switch:0 with apower [W],
    # voltage [V], aenergy.total [Wh] (shelly-api-docs.shelly.cloud/gen2/
    # ComponentsAndServices/Switch#status and .../Mqtt); no time in it: arrival time.
    "shelly": MqttPreset(
        rules=(
            _preset_rule(
                topic="{prefix}/status/switch:0",
                path="apower",
                metric="active_power_kw",
                scale=0.001,
                unit="W",
            ),
            _preset_rule(
                topic="{prefix}/status/switch:0",
                path="aenergy.total",
                metric="energy_import_kwh",
                scale=0.001,
                unit="Wh",
            ),
            _preset_rule(
                topic="{prefix}/status/switch:0", path="voltage", metric="voltage_v", unit="V"
            ),
        ),
        ts_path=None,
    ),
    # Shelly Pro 3EM (triphase profile): em:0 total_act_power [W], a_voltage [V];
    # emdata:0 total_act / total_act_ret [Wh], all phases (shelly-api-docs.shelly.cloud/
    # gen2/ComponentsAndServices/EM#status and .../EMData#status).
    "shelly_pro3em": MqttPreset(
        rules=(
            _preset_rule(
                topic="{prefix}/status/em:0",
                path="total_act_power",
                metric="active_power_kw",
                scale=0.001,
                unit="W",
            ),
            _preset_rule(
                topic="{prefix}/status/em:0", path="a_voltage", metric="voltage_v", unit="V"
            ),
            _preset_rule(
                topic="{prefix}/status/emdata:0",
                path="total_act",
                metric="energy_import_kwh",
                scale=0.001,
                unit="Wh",
            ),
            _preset_rule(
                topic="{prefix}/status/emdata:0",
                path="total_act_ret",
                metric="energy_export_kwh",
                scale=0.001,
                unit="Wh",
            ),
        ),
        ts_path=None,
    ),
}

_SPARKPLUG_ID = r"^[^/+#]+$"  # Sparkplug B ids are one topic level without wildcards


class SparkplugSource(_Frozen):
    """Where a Sparkplug B device's metrics come from: ``spBv1.0/<group>/DDATA/<edge_node>/
    <device>`` (or the edge node's own NDATA when ``device`` is None)."""

    group: Annotated[str, Field(pattern=_SPARKPLUG_ID)]
    edge_node: Annotated[str, Field(pattern=_SPARKPLUG_ID)]
    device: Annotated[str, Field(pattern=_SPARKPLUG_ID)] | None = None


def _raw_rule_key(rule: object, index: int) -> tuple[str, dict[str, Any]] | None:
    """(fields key, MqttField data) of one raw rule table, None when it is malformed
    (its own validation then names the problem)."""
    if isinstance(rule, MqttRule):
        rule = rule.model_dump(exclude_none=True)
    if not isinstance(rule, dict) or not isinstance(rule.get("metric"), str):
        return None
    key = rule.get("path") or rule.get("name") or f"rules[{index}]"
    spec: dict[str, Any] = {"metric": rule["metric"]}
    if rule.get("type") is not None:
        spec["type"] = rule["type"]
        spec["scale"] = rule.get("scale", 1.0)
    return str(key), spec


class MqttDevice(_DeviceBase):
    """A device whose readings arrive over MQTT, in one of four forms: ``fields`` (JSON
    top-level keys on one ``topic``), ``rules`` (JSON paths on topic filters), a
    ``preset`` (rules of a device family) or ``sparkplug`` (Sparkplug B metrics by name).

    ``fields`` is the table the rest of zerocarbon asks for a device's metrics; for
    ``rules``, ``preset`` and ``sparkplug`` it is derived from the rules (path or name
    -> metric) and not given in the site file.
    """

    protocol: Literal["mqtt"]
    # topic filter of its messages: exact, or with +, # or {device}; "" when its rules,
    # preset or Sparkplug B source give the topics
    topic: str = ""
    fields: dict[str, str | MqttField] = Field(default_factory=dict)  # JSON key -> metric
    rules: tuple[MqttRule, ...] = ()  # values by JSON path (or Sparkplug name)
    preset: Literal["tasmota", "shelly", "shelly_pro3em"] | None = None
    prefix: str | None = None  # preset: the device's own topic (Tasmota Topic, Shelly prefix)
    sparkplug: SparkplugSource | None = None  # Sparkplug B edge node (and device)
    ts_field: str | None = "ts"  # JSON key (rules, preset: path) of the time; None: arrival
    timezone: str | None = None  # IANA zone of times without an offset (tasmota: the site's)
    interval_s: float = Field(default=10.0, gt=0)  # expected publish interval [s]

    @model_validator(mode="before")
    @classmethod
    def _derive_fields(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        preset = MQTT_PRESETS.get(data.get("preset") or "")
        if preset is not None and preset.interval_s is not None and "interval_s" not in data:
            data = {**data, "interval_s": preset.interval_s}  # e.g. Tasmota's TelePeriod
        raw_rules = data.get("rules") or (preset.rules if preset is not None else ())
        if not raw_rules:
            return data
        derived: dict[str, Any] = {}
        for i, rule in enumerate(raw_rules):
            item = _raw_rule_key(rule, i)
            if item is not None:
                key = item[0] if item[0] not in derived else f"{item[0]} (rules[{i}])"
                derived[key] = item[1]
        given = data.get("fields")
        if given and (not isinstance(given, dict) or set(given) != set(derived)):
            raise ValueError("fields: give either `fields` or `rules`/`preset`, not both")
        return {**data, "fields": derived}

    @field_validator("topic", "prefix")
    @classmethod
    def _topic_filter(cls, value: str | None) -> str | None:
        return value if not value else check_topic_filter(value)

    @field_validator("fields")
    @classmethod
    def _known_metrics(cls, value: dict[str, str | MqttField]) -> dict[str, str | MqttField]:
        for key, spec in value.items():
            name = spec if isinstance(spec, str) else spec.metric
            if name not in METRICS_BY_NAME:
                known = ", ".join(sorted(METRICS_BY_NAME))
                raise ValueError(f"key {key!r}: unknown metric {name!r}; known: {known}")
        return value

    @field_validator("ts_field")
    @classmethod
    def _ts_path(cls, value: str | None) -> str | None:
        if value is not None and not value:
            raise ValueError("must not be empty (leave it out for the arrival time)")
        return value

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                ZoneInfo(value)
            except (ZoneInfoNotFoundError, ValueError):
                raise ValueError(f"unknown IANA timezone {value!r}") from None
        return value

    @model_validator(mode="after")
    def _one_form(self) -> MqttDevice:
        if self.prefix is not None and self.preset is None:
            raise ValueError("prefix: only a device with a `preset` takes one")
        if self.preset is not None and (self.rules or self.topic):
            raise ValueError("preset: a preset device takes `prefix`, not `topic` or `rules`")
        if self.sparkplug is not None:
            if self.preset is not None or self.topic:
                raise ValueError("sparkplug: a Sparkplug B device takes no `topic` or `preset`")
            if not self.rules:
                raise ValueError("rules: a Sparkplug B device maps its metrics in [[rules]]")
            for i, rule in enumerate(self.rules):
                if rule.name is None or rule.path is not None or rule.topic is not None:
                    raise ValueError(
                        f"rules[{i}].name: a Sparkplug B rule gives the metric `name` "
                        "(no `path`, no `topic`)"
                    )
            return self
        if self.rules:
            for i, rule in enumerate(self.rules):
                if rule.path is None or rule.name is not None:
                    raise ValueError(f"rules[{i}].path: a JSON rule gives a `path` (no `name`)")
                if rule.topic is None and not self.topic:
                    raise ValueError(f"rules[{i}].topic: no topic here nor the device's `topic`")
            if self.ts_field is not None:
                try:
                    split_json_path(self.ts_field)
                except ValueError as exc:
                    raise ValueError(f"ts_field: {exc}") from None
            return self
        if self.preset is None:
            if not self.fields:
                raise ValueError("fields: must map at least one JSON key to a metric")
            if not self.topic:
                raise ValueError("topic: a device with `fields` needs its topic")
        return self

    @property
    def uses_paths(self) -> bool:
        """Whether its keys are JSON paths (``rules``, ``preset``) rather than the
        top-level keys of ``fields`` (kept literal: a key may contain a dot)."""
        return bool(self.rules) or self.preset is not None

    def message_rules(self) -> tuple[MqttRule, ...]:
        """Its values as rules with their topics resolved: a preset's with ``{prefix}``
        replaced, ``fields`` as one rule per key (``path`` the literal key)."""
        if self.preset is not None:
            prefix = self.prefix if self.prefix is not None else DEVICE_CAPTURE
            return tuple(
                r.model_copy(update={"topic": (r.topic or "").replace("{prefix}", prefix)})
                for r in MQTT_PRESETS[self.preset].rules
            )
        if self.rules:
            if self.sparkplug is not None:
                return self.rules
            return tuple(
                r if r.topic else r.model_copy(update={"topic": self.topic}) for r in self.rules
            )
        return tuple(
            MqttRule(topic=self.topic, path=key, metric=self.field_metric(key))
            for key in self.fields
        )

    def ts_path(self) -> str | None:
        """Where its messages give their time (a preset's unless ``ts_field`` is set)."""
        if self.preset is not None and "ts_field" not in self.model_fields_set:
            return MQTT_PRESETS[self.preset].ts_path
        return self.ts_field

    def local_time_zone(self, site_timezone: str) -> str | None:
        """IANA zone of its times without an offset; None: such a time is an error."""
        if self.timezone is not None:
            return self.timezone
        if self.preset is not None and MQTT_PRESETS[self.preset].local_time:
            return site_timezone
        return None

    @property
    def source(self) -> str:
        """Where its messages come from, for people: its topic filter(s), the preset
        and prefix, or the Sparkplug B node (and device)."""
        if self.sparkplug is not None:
            sp = self.sparkplug
            node = f"spBv1.0/{sp.group}/+/{sp.edge_node}"
            return f"sparkplug {node}/{sp.device}" if sp.device else f"sparkplug {node}"
        topics = dict.fromkeys(
            r.topic.replace(DEVICE_CAPTURE, self.id) for r in self.message_rules() if r.topic
        )
        where = ", ".join(topics)
        return f"{self.preset} {where}" if self.preset is not None else where

    def field_metric(self, key: str) -> str:
        spec = self.fields[key]
        return spec if isinstance(spec, str) else spec.metric

    def counter_register(self, metric: str) -> tuple[RegisterType, float] | None:
        """(register type, scale) of a counter metric, when the mapping gives them."""
        for spec in self.fields.values():
            if isinstance(spec, MqttField) and spec.metric == metric and spec.type is not None:
                return spec.type, spec.scale
        return None


Device = Annotated[
    ModbusTcpDevice | ModbusRtuDevice | MqttDevice | Dlt645Device,
    Field(discriminator="protocol"),
]
AnyDevice = ModbusTcpDevice | ModbusRtuDevice | MqttDevice | Dlt645Device


class _DeviceFault(_Frozen):
    device: str  # id of the device the fault happens to


class _CounterFault(_DeviceFault):
    metric: str | None = None  # counter metric; None: every counter of the device

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, value: str | None) -> str | None:
        if value is not None and value not in METRICS_BY_NAME:
            raise ValueError(f"unknown metric {value!r}")
        return value


class CounterResetFault(_CounterFault):
    """The device restarts at ``at_s`` and its counter starts again from 0, counting
    the true energy from there."""

    at_s: float = Field(ge=0)  # offset from the simulation start [simulated s]


class MeterReplacementFault(_CounterFault):
    """A new meter is fitted at ``at_s``: the counter jumps to ``new_value`` and counts
    the true energy from there."""

    at_s: float = Field(ge=0)  # offset from the simulation start [simulated s]
    new_value: float = Field(ge=0)  # the new meter's reading [counter unit, e.g. kWh]


class RolloverFault(_CounterFault):
    """The counter starts ``below_wrap`` under its register's wrap value, so it wraps
    once that much energy has been counted (integer registers only)."""

    below_wrap: float = Field(default=10.0, gt=0)  # headroom at the start [counter unit]


class GapFault(_DeviceFault):
    """The device is silent for ``duration_s`` from ``start_s``; its counters keep
    counting. ``silent``: its Modbus unit gets no replies; ``closed``: its Modbus
    endpoint stops listening and drops connections. MQTT devices stop publishing."""

    start_s: float = Field(ge=0)  # offset from the simulation start [simulated s]
    duration_s: float = Field(gt=0)  # [simulated s]
    mode: Literal["silent", "closed"] = "silent"


class LateDataFault(_DeviceFault):
    """MQTT: messages stamped in [start_s, start_s + duration_s) are held back and
    published ``delay_s`` after the window ends, in shuffled order, with their own
    timestamps."""

    start_s: float = Field(ge=0)  # offset from the simulation start [simulated s]
    duration_s: float = Field(gt=0)  # [simulated s]
    delay_s: float = Field(default=60.0, ge=0)  # [simulated s]


class DuplicateFault(_DeviceFault):
    """MQTT: messages published twice (same payload, same timestamp): a seeded
    ``share`` of those stamped in [start_s, end_s), and the first one at or after each
    of ``at_s``."""

    share: float = Field(default=0.0, ge=0, le=1)
    start_s: float = Field(default=0.0, ge=0)  # window of ``share`` [simulated s]
    end_s: float | None = Field(default=None, ge=0)  # None: to the end of the run
    at_s: tuple[Annotated[float, Field(ge=0)], ...] = ()  # offsets [simulated s]


class BackwardStepFault(_CounterFault):
    """The counter reads ``step`` lower than its true value in
    [at_s, at_s + duration_s) (by default one MQTT publish interval: one message),
    then continues from the true value."""

    at_s: float = Field(ge=0)  # offset from the simulation start [simulated s]
    step: float = Field(default=12.0, gt=0)  # [counter unit, e.g. kWh]
    duration_s: float | None = Field(default=None, gt=0)  # None: publish_interval_s


class _WindowFault(_DeviceFault):
    start_s: float = Field(default=0.0, ge=0)  # offset from the simulation start [simulated s]
    duration_s: float | None = Field(default=None, gt=0)  # None: to the end of the run


class _MetricFault(_DeviceFault):
    metric: str | None = None  # None: every metric the fault can apply to

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, value: str | None) -> str | None:
        if value is not None and value not in METRICS_BY_NAME:
            raise ValueError(f"unknown metric {value!r}")
        return value


class ExceptionCodeFault(_WindowFault):
    """Modbus: the unit answers every request with exception ``code`` in the window
    (Modbus Application Protocol v1.1b3 section 7: 04 server device failure, 06 server
    device busy, ...)."""

    code: int = Field(default=0x04, ge=1, le=0xFF)


class SingleConnectionFault(_DeviceFault):
    """Modbus: the device's endpoint serves one client connection at a time; a second
    concurrent one is accepted and closed at once."""


class WordSwapFault(_WindowFault, _MetricFault):
    """Modbus: the device serves its multi-register values (or only ``metric``'s) with
    the words in the wrong order in the window, as a meter configured for the other word
    order does."""


class StuckValueFault(_WindowFault, _MetricFault):
    """The device keeps reporting the value it reported when the window began
    (``metric``, or every metric when None)."""


class SpikeFault(_MetricFault):
    """A gauge reads ``factor`` x its value (or ``value``) once at each of ``at_s``: the
    first Modbus read of it, or the first MQTT message, at or after that time."""

    metric: str = "active_power_kw"
    at_s: tuple[Annotated[float, Field(ge=0)], ...] = Field(min_length=1)  # [simulated s]
    factor: float = 10.0
    value: float | None = None  # served instead of factor x the value [metric unit]


class TornReadFault(_CounterFault):
    """Modbus: a counter of two registers is updated one word at a time; the first read
    after a carry into its high word gets the old high word with the new low word
    (``old_high``) or the new high word with the old low word (``old_low``)."""

    start_s: float = Field(default=0.0, ge=0)  # [simulated s]
    duration_s: float | None = Field(default=None, gt=0)  # None: to the end of the run
    mode: Literal["old_high", "old_low"] = "old_high"
    below_carry: float | None = Field(default=None, gt=0)  # start this far below a carry


class ClockSkewFault(_WindowFault):
    """MQTT: the payload timestamps of messages in the window are ``skew_s`` off the
    plant's time (+ ahead, - behind)."""

    skew_s: float  # [s]

    @field_validator("skew_s")
    @classmethod
    def _nonzero(cls, value: float) -> float:
        if value == 0:
            raise ValueError("must not be 0")
        return value


class MalformedFault(_DeviceFault):
    """MQTT: a seeded ``share`` of the messages stamped in [start_s, end_s), and the
    first one at or after each of ``at_s``, are replaced by malformed JSON of ``kinds``
    (chosen in turn, seeded)."""

    share: float = Field(default=0.0, ge=0, le=1)
    start_s: float = Field(default=0.0, ge=0)  # [simulated s]
    end_s: float | None = Field(default=None, ge=0)  # None: to the end of the run
    at_s: tuple[Annotated[float, Field(ge=0)], ...] = ()  # [simulated s]
    kinds: tuple[Literal["truncated", "not_object", "deep_nesting"], ...] = Field(
        default=("truncated", "not_object", "deep_nesting"), min_length=1
    )


class LineDegradationFault(_Frozen):
    """Plant fault: from ``start_s`` the loads of production line ``line`` draw
    ``percent`` % more power for the same output (energy per unit up by that share).
    Real energy: the ground truth follows it."""

    line: str  # id of the line ([[lines]] or a device's ``line``)
    start_s: float = Field(ge=0)  # offset from the simulation start [simulated s]
    percent: float = Field(gt=0)  # extra energy for the same production [%]
    duration_s: float | None = Field(default=None, gt=0)  # None: to the end (never repaired)


class DemandPeakFault(_Frozen):
    """Plant fault: an extra unmetered site load of ``extra_kw`` over
    [start_s, start_s + duration_s), raising the grid import. Real energy: the ground
    truth follows it."""

    start_s: float = Field(ge=0)  # offset from the simulation start [simulated s]
    duration_s: float = Field(default=900.0, gt=0)  # [simulated s]
    extra_kw: float = Field(gt=0)  # [kW]


class SimulatorFaults(_Frozen):
    """Faults of the simulated devices ([simulation.faults]); all off by default.

    Times are offsets from the simulation start in simulated seconds. Faults change
    what devices report, never the energy the plant uses (the ground truth), except
    the plant faults ``line_degradations`` and ``demand_peaks``, which change the
    physics; see :mod:`zerocarbon.simulators.faults`.
    """

    counter_resets: tuple[CounterResetFault, ...] = ()
    meter_replacements: tuple[MeterReplacementFault, ...] = ()
    rollovers: tuple[RolloverFault, ...] = ()
    gaps: tuple[GapFault, ...] = ()
    late_data: tuple[LateDataFault, ...] = ()
    duplicates: tuple[DuplicateFault, ...] = ()
    backward_steps: tuple[BackwardStepFault, ...] = ()
    exception_codes: tuple[ExceptionCodeFault, ...] = ()
    single_connection: tuple[SingleConnectionFault, ...] = ()
    word_swaps: tuple[WordSwapFault, ...] = ()
    stuck_values: tuple[StuckValueFault, ...] = ()
    spikes: tuple[SpikeFault, ...] = ()
    torn_reads: tuple[TornReadFault, ...] = ()
    clock_skews: tuple[ClockSkewFault, ...] = ()
    malformed: tuple[MalformedFault, ...] = ()
    line_degradations: tuple[LineDegradationFault, ...] = ()
    demand_peaks: tuple[DemandPeakFault, ...] = ()


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
    # a line's fixed load (lighting, compressed-air leaks, standby), drawn at all hours
    # and producing nothing, as a fraction of its rating [-]; default 0 (none)
    line_idle_fraction: float = Field(default=0.0, ge=0, le=1)
    # relative sd of a line's energy per unit, a seeded factor per UTC hour (product
    # mix, temperature) on the energy the line draws for its output [-]; default 0
    line_efficiency_noise: float = Field(default=0.0, ge=0, le=0.2)
    tick_s: float = Field(default=5.0, gt=0)  # simulated seconds per physics step
    publish_interval_s: float = Field(default=10.0, gt=0)  # MQTT publish period [sim s]
    faults: SimulatorFaults = SimulatorFaults()  # fault injection, all off


AlertChannelKind = Literal["webhook", "wecom", "dingtalk", "feishu", "email", "mqtt"]
_ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"
# what each kind needs besides name and kind: (field, or its *_env twin)
_CHANNEL_NEEDS: dict[str, tuple[str, ...]] = {
    "webhook": ("url",),
    "wecom": ("key",),
    "dingtalk": ("key",),
    "feishu": ("key",),
    "email": ("smtp_host", "sender", "recipients"),
    "mqtt": ("url", "topic"),
}


class AlertChannelConfig(_Frozen):
    """One ``[[alerts.channels]]``: where alert notifications go
    (:mod:`zerocarbon.alerts.channels`). Secrets are best given as the name of an
    environment variable (``key_env``, ``secret_env``, ``password_env``, ``url_env``)
    so the site file holds none; a value given in the file is used as it is.

    ``key``: the WeCom robot key, the DingTalk ``access_token`` or the Feishu hook
    token. ``url``: the webhook's URL, the MQTT broker (``mqtt://host:port``) or, for
    the chat robots, their base URL (default the vendor's). ``secret``: the DingTalk or
    Feishu signing secret, when the robot has signing on.
    """

    name: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_\-]{0,62}$")]
    kind: AlertChannelKind
    url: str | None = None
    url_env: Annotated[str, Field(pattern=_ENV_NAME)] | None = None
    key: str | None = None
    key_env: Annotated[str, Field(pattern=_ENV_NAME)] | None = None
    secret: str | None = None
    secret_env: Annotated[str, Field(pattern=_ENV_NAME)] | None = None
    topic: str | None = None  # mqtt: the topic published to (QoS 1)
    smtp_host: str | None = None  # email
    smtp_port: int = Field(default=25, ge=1, le=65535)
    starttls: bool = False
    username: str | None = None
    password_env: Annotated[str, Field(pattern=_ENV_NAME)] | None = None
    sender: str | None = None
    recipients: tuple[str, ...] = ()
    timeout_s: float = Field(default=10.0, gt=0, le=300)

    @model_validator(mode="after")
    def _has_what_its_kind_needs(self) -> AlertChannelConfig:
        for name in _CHANNEL_NEEDS[self.kind]:
            given = getattr(self, name)
            twin = getattr(self, f"{name}_env", None)
            if not given and not twin:
                either = f" (or {name}_env)" if f"{name}_env" in type(self).model_fields else ""
                raise ValueError(f"a {self.kind} channel needs {name}{either}")
        return self


AlertSeverity = Literal["info", "warning", "critical"]
_RULE_NAME = r"^[a-z0-9][a-z0-9_\-]{0,62}$"


class _AlertRule(_Frozen):
    """What every ``[[alerts.rules]]`` has (:mod:`zerocarbon.alerts.rules`).

    ``for_s``: how long the condition must hold before the alert fires [s];
    ``clear_for_s``: how long it must be clear before it resolves [s] (both on the
    readings' clock). ``channels``: the ``[[alerts.channels]]`` it goes to (default:
    all of them).
    """

    name: Annotated[str, Field(pattern=_RULE_NAME)]
    severity: AlertSeverity = "warning"
    channels: tuple[str, ...] | None = None
    for_s: float = Field(default=0.0, ge=0)
    clear_for_s: float = Field(default=0.0, ge=0)


class OfflineRule(_AlertRule):
    """A device that sent nothing for ``intervals`` of its poll interval (Modbus,
    DL/T 645) or expected publish interval (MQTT ``interval_s``); resolves when data
    returns."""

    kind: Literal["offline"]
    devices: tuple[str, ...] = ()  # empty: every device of the site
    intervals: float = Field(default=3.0, gt=0)
    severity: AlertSeverity = "critical"


class ThresholdRule(_AlertRule):
    """A metric of a device above (or below) a limit for ``for_s``; clear once back
    past the limit by ``hysteresis`` (same unit as the metric) for ``clear_for_s``."""

    kind: Literal["threshold"]
    device: str
    metric: str
    above: float | None = None
    below: float | None = None
    hysteresis: float = Field(default=0.0, ge=0)

    @model_validator(mode="after")
    def _one_limit(self) -> ThresholdRule:
        if (self.above is None) == (self.below is None):
            raise ValueError("a threshold rule needs exactly one of above or below")
        if self.metric not in METRICS_BY_NAME:
            raise ValueError(f"metric: unknown metric {self.metric!r}")
        return self


class DemandRule(_AlertRule):
    """The 15-minute rolling demand of grid import (DL/T 614 sliding window) against
    ``limit_percent`` of ``[grid] contracted_demand_kw``; with ``on_projection`` it
    fires as soon as the window's projected end value crosses the limit, before the
    window closes. Clear once both are ``hysteresis_percent`` under the limit."""

    kind: Literal["demand"]
    devices: tuple[str, ...] = ()  # meters summed; empty: every device with role grid
    limit_percent: float = Field(default=100.0, gt=0)
    hysteresis_percent: float = Field(default=5.0, ge=0, lt=100)
    on_projection: bool = True
    # how often a 15-min window closes [s]: 60 for the sliding demand (DL/T 614's
    # 1-min slide), 900 for block demand (fixed quarter hours: the projection then
    # looks up to 15 min ahead); a divisor of 900
    slide_s: float = Field(default=60.0, gt=0, le=900)

    @model_validator(mode="after")
    def _slide_divides_the_window(self) -> DemandRule:
        if (900.0 / self.slide_s) % 1:
            raise ValueError(f"slide_s must divide 900 s evenly, got {self.slide_s}")
        return self


class DataQualityRule(_AlertRule):
    """Hours whose data cannot be trusted as they are: the site's estimated share
    above ``max_estimated_share``, a device's counter fault (reset, rollover, meter
    replacement, rejected jump), sub-meters that do not add up to their main meter
    beyond ``[accounting] submeter_tolerance_pct``. Evaluated once an hour is closed."""

    kind: Literal["data_quality"]
    max_estimated_share: float = Field(default=0.05, ge=0, le=1)
    counter_faults: bool = True
    submeter_mismatch: bool = True
    estimated_share: bool = True


class DriftRule(_AlertRule):
    """Efficiency drift of production lines: an ISO 50006 energy baseline (energy = a +
    b x units + c x relevant variables, least squares) fitted over the baseline period,
    and a tabular CUSUM of actual minus expected energy per ``period`` (Montgomery,
    sec. 9.1), firing when it crosses ``h`` residual standard deviations with reference
    value ``k`` (:mod:`zerocarbon.alerts.drift`). With ``residual_model = "relative"``
    the residual is a share of the expected energy and the fit weighted by ``1 /
    expected^2`` (spread proportional to the energy drawn). Resolves after
    ``clear_periods`` periods without a new signal.

    Baseline period: ``baseline_start``..``baseline_end`` (UTC or with offset), else
    the first ``baseline_hours`` closed hours of data the line has.
    """

    kind: Literal["drift"]
    lines: tuple[str, ...] = ()  # empty: every production line
    period: Literal["hour", "shift"] = "hour"
    shift_hours: int = Field(default=8, ge=1, le=24)  # a shift's length, with period shift
    baseline_start: datetime | None = None
    baseline_end: datetime | None = None
    baseline_hours: int = Field(default=168, ge=4)
    variables: tuple[str, ...] = ()  # relevant variables, "device:metric" hourly means
    # "relative": residual variance proportional to the expected energy squared (weighted
    # least squares, CUSUM of (actual - expected) / expected); "absolute": constant (OLS,
    # CUSUM of actual - expected in kWh)
    residual_model: Literal["relative", "absolute"] = "relative"
    # defaults chosen on the simulated plant (docs/drift.md): hour, relative, k 1.5, h 7
    k: float = Field(default=1.5, gt=0)  # reference value [residual sigmas]
    h: float = Field(default=7.0, gt=0)  # decision limit [residual sigmas]
    clear_periods: int = Field(default=24, ge=1)

    @model_validator(mode="after")
    def _baseline_period(self) -> DriftRule:
        start, end = self.baseline_start, self.baseline_end
        if (start is None) != (end is None):
            raise ValueError("give both baseline_start and baseline_end, or neither")
        if start is not None and end is not None:
            if start.tzinfo is None or end.tzinfo is None:
                raise ValueError("baseline_start and baseline_end need a UTC offset (Z)")
            if end <= start:
                raise ValueError("baseline_end must be after baseline_start")
        for v in self.variables:
            device, _, metric = v.partition(":")
            if not device or metric not in METRICS_BY_NAME:
                raise ValueError(f'variables: {v!r} is not "device:metric" with a known metric')
        return self


AlertRuleConfig = Annotated[
    OfflineRule | ThresholdRule | DemandRule | DataQualityRule | DriftRule,
    Field(discriminator="kind"),
]


class AlertsConfig(_Frozen):
    """``[alerts]``: rules (``[[alerts.rules]]``, :mod:`zerocarbon.alerts.rules`) and
    notification delivery (``[[alerts.channels]]``, :mod:`zerocarbon.alerts.dispatcher`)."""

    rules: tuple[AlertRuleConfig, ...] = ()
    channels: tuple[AlertChannelConfig, ...] = ()
    retry_base_s: float = Field(default=10.0, gt=0)  # first retry after a failure [s]
    retry_max_s: float = Field(default=3600.0, gt=0)  # back-off cap [s]
    # an hour is evaluated (data quality, drift) once readings are this far past its end
    settle_s: float = Field(default=300.0, ge=0)

    @model_validator(mode="after")
    def _unique_names(self) -> AlertsConfig:
        for what, names in (
            ("alert channel", [c.name for c in self.channels]),
            ("alert rule", [r.name for r in self.rules]),
        ):
            dupes = sorted({n for n in names if names.count(n) > 1})
            if dupes:
                raise ValueError(f"{what} names must be unique, repeated: {dupes}")
        known = {c.name for c in self.channels}
        for i, rule in enumerate(self.rules):
            for channel in rule.channels or ():
                if channel not in known:
                    raise ValueError(
                        f"rules[{i}].channels: no [[alerts.channels]] named {channel!r}"
                    )
        return self


class SiteConfig(_Frozen):
    site: SiteInfo = SiteInfo()
    grid: GridConfig = GridConfig()
    mqtt: MqttConfig | None = None
    devices: tuple[Device, ...]
    lines: tuple[LineConfig, ...] = ()
    fuels: dict[str, FuelConfig] = Field(default_factory=dict)
    green_power: tuple[GreenPowerContract, ...] = ()
    certificates: tuple[CertificateBatch, ...] = ()
    ingest: IngestConfig = IngestConfig()
    storage: StorageConfig = StorageConfig()
    accounting: AccountingConfig = AccountingConfig()
    simulation: SimulationConfig = SimulationConfig()
    alerts: AlertsConfig = AlertsConfig()
    tariff: TariffConfig | None = None  # [tariff]: energy cost (zerocarbon.accounts)
    offsets: tuple[OffsetConfig, ...] = ()  # [[offsets]]: CCER credits, allowances
    accounts: AccountsConfig = AccountsConfig()  # [accounts]: period accounts
    uplink: UplinkConfig | None = None  # [uplink]: to the group's center (zerocarbon.uplink)
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
        if not any(d.role is DeviceRole.GRID for d in self.devices):
            raise ValueError(
                "at least one device must have role 'grid' (the grid connection meter)"
            )
        for i, device in enumerate(self.devices):
            if device.parent is not None and device.parent not in seen:
                raise ValueError(f"devices[{i}].parent: no device {device.parent!r}")
            if device.parent == device.id:
                raise ValueError(f"devices[{i}].parent: a device cannot be its own parent")
        line_ids = [ln.id for ln in self.lines]
        if len(set(line_ids)) != len(line_ids):
            raise ValueError(f"lines: ids must be unique, got {line_ids}")
        if self.lines:
            for i, device in enumerate(self.devices):
                if device.line is not None and device.line not in line_ids:
                    raise ValueError(
                        f"devices[{i}].line: {device.line!r} is not one of [[lines]] {line_ids}"
                    )
        for kind, items in (("green_power", self.green_power), ("certificates", self.certificates)):
            ids = [x.id for x in items]
            if len(set(ids)) != len(ids):
                raise ValueError(f"{kind}: ids must be unique, got {ids}")
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
        links: dict[tuple[str, int], ModbusTcpDevice] = {}
        for d in self.modbus_devices:
            first = links.setdefault(d.endpoint, d)
            for name in ("max_in_flight", "request_gap_s"):
                if getattr(first, name) != getattr(d, name):
                    raise ValueError(
                        f"devices {first.id!r} and {d.id!r} share {d.host}:{d.port} but "
                        f"disagree on {name} ({getattr(first, name)} and {getattr(d, name)}): "
                        "it is a property of the link"
                    )
        meters: dict[tuple[str, str], str] = {}
        for m in self.dlt645_devices:
            mkey = (m.link, m.address.upper())
            if mkey in meters:
                raise ValueError(
                    f"devices {meters[mkey]!r} and {m.id!r} share {m.link} address {m.address}"
                )
            meters[mkey] = m.id
        self._check_serial_lines()
        self._check_alert_rules()
        check_tariff(self)
        check_offsets(self.offsets)
        check_accounts(self)
        return self

    def _check_alert_rules(self) -> None:
        """Every device, line and figure an alert rule names exists."""
        ids = {d.id for d in self.devices}
        lines = set(self.line_ids())
        for i, rule in enumerate(self.alerts.rules):
            where = f"alerts.rules[{i}] ({rule.name})"
            named: list[str] = []
            if isinstance(rule, OfflineRule | DemandRule):
                named = list(rule.devices)
            elif isinstance(rule, ThresholdRule):
                named = [rule.device]
            elif isinstance(rule, DriftRule):
                named = [v.partition(":")[0] for v in rule.variables]
                unknown_lines = [ln for ln in rule.lines if ln not in lines]
                if unknown_lines or not lines:
                    raise ValueError(
                        f"{where}.lines: no production line {unknown_lines or ''} "
                        f"(the site's lines: {sorted(lines)})"
                    )
            for device in named:
                if device not in ids:
                    raise ValueError(f"{where}: no device {device!r}")
            if isinstance(rule, DemandRule) and self.grid.contracted_demand_kw is None:
                raise ValueError(
                    f"{where}: a demand rule needs [grid] contracted_demand_kw "
                    "(the maximum demand of the supply contract)"
                )

    def _check_serial_lines(self) -> None:
        """Units on one serial port: distinct addresses, one protocol, one set of line
        settings (and one request gap for Modbus RTU)."""
        rtu_units: dict[tuple[str, int], str] = {}
        for d in self.modbus_rtu_devices:
            key = (d.serial_port, d.device_id)
            if key in rtu_units:
                raise ValueError(
                    f"devices {rtu_units[key]!r} and {d.id!r} share "
                    f"{d.serial_port} unit {d.device_id}"
                )
            rtu_units[key] = d.id
        ports: dict[str, ModbusRtuDevice | Dlt645Device] = {}
        serial: list[ModbusRtuDevice | Dlt645Device] = [*self.modbus_rtu_devices]
        serial += [m for m in self.dlt645_devices if m.serial_port is not None]
        for device in serial:
            port = device.serial_port
            assert port is not None
            first = ports.setdefault(port, device)
            if first.protocol != device.protocol:
                raise ValueError(
                    f"devices {first.id!r} ({first.protocol}) and {device.id!r} "
                    f"({device.protocol}) share serial port {port}: one protocol a line"
                )
            names = ["baudrate", "bytesize", "parity", "stopbits"]
            if isinstance(device, ModbusRtuDevice):
                names.append("request_gap_s")
            for name in names:
                mine, theirs = getattr(first, name), getattr(device, name)
                if mine != theirs:
                    raise ValueError(
                        f"devices {first.id!r} and {device.id!r} share serial port {port} "
                        f"but disagree on {name} ({mine} and {theirs}): "
                        "it is a property of the line"
                    )

    @property
    def modbus_devices(self) -> tuple[ModbusTcpDevice, ...]:
        return tuple(d for d in self.devices if isinstance(d, ModbusTcpDevice))

    @property
    def modbus_rtu_devices(self) -> tuple[ModbusRtuDevice, ...]:
        """Modbus RTU units on serial ports (:attr:`modbus_devices` are the TCP ones)."""
        return tuple(d for d in self.devices if isinstance(d, ModbusRtuDevice))

    @property
    def mqtt_devices(self) -> tuple[MqttDevice, ...]:
        return tuple(d for d in self.devices if isinstance(d, MqttDevice))

    @property
    def dlt645_devices(self) -> tuple[Dlt645Device, ...]:
        return tuple(d for d in self.devices if isinstance(d, Dlt645Device))

    def device(self, device_id: str) -> AnyDevice:
        for d in self.devices:
            if d.id == device_id:
                return d
        raise KeyError(f"no device {device_id!r} in the site config")

    def devices_with_role(self, role: DeviceRole) -> tuple[AnyDevice, ...]:
        return tuple(d for d in self.devices if d.role is role)

    def profile_of(self, device: ModbusDevice) -> DeviceProfile:
        return device.load_profile(self.base_dir)

    def line_ids(self) -> tuple[str, ...]:
        """Production lines: those of [[lines]], else every device's ``line``, in order."""
        if self.lines:
            return tuple(ln.id for ln in self.lines)
        return tuple(dict.fromkeys(d.line for d in self.devices if d.line is not None))

    def resolve_path(self, path: str) -> Path:
        """A path of the site file, relative to the file's folder."""
        p = Path(path)
        return p if p.is_absolute() or self.base_dir is None else self.base_dir / p


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
