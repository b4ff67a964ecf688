"""MQTT ingest throughput: messages/s through the ``MqttCollector`` into the ``Pipeline``.

Measured: the gateway's MQTT path — :class:`~zerocarbon.ingest.mqtt.collector.MqttCollector`
(aiomqtt over paho) parsing the JSON payloads of each event-loop turn's messages into
one batch and putting it into a :class:`~zerocarbon.ingest.pipeline.Pipeline` (default
settings, admission off) whose only sink counts the readings. The pipeline calls each
put's ack once the sink took its batch, so at QoS 1 every PUBACK is sent only after the
pipeline's ack, as in the gateway. Timed from the collector's first put (its first
turn's messages, which the rate leaves out) to the moment the sink has counted the
readings of all messages. (The pipeline is closed right after the put that holds the
last message, so the tail batch does not wait out the flush interval at QoS 0.)

Ceiling, in the same run: a bare aiomqtt subscriber on the same broker, same topics,
same QoS, same messages, which only counts them (no parsing), timed from its first
message to its last.

Both at QoS 1 (the gateway's setting) and QoS 0. For each run a separate publisher
process (so it shares neither event loop nor interpreter with the subscriber measured)
sends ``--messages`` JSON payloads (``{"ts": ..., "p": ..., "e": ...}``, round robin
over ``--devices`` topics) as fast as the broker takes them: pre-encoded MQTT 3.1.1
PUBLISH packets on a plain socket, so the publisher is never the bottleneck. The
subscriber measured is subscribed before the publisher starts; every message must
arrive (a stall raises). Medians over ``--repeat`` runs, alternating which of the two is
measured first. Prints the rates and ratios, and last the JSON line
``{"metric": "mqtt_messages_per_s", "value": <collector QoS 1>, "ceiling": <bare QoS 1>,
"ratio": ...}``.

    python bench/mqtt_ingest.py [--messages 100000] [--devices 50] [--repeat 5]
    python bench/mqtt_ingest.py --profile collector.pstats [--qos 1]

``--profile FILE`` instead runs the collector once under cProfile, writes the stats to
FILE and prints the top functions (no JSON line; the rate under the profiler is lower).

Broker: ``ZEROCARBON_BENCH_MQTT_URL`` (``mqtt://host:port``) if set, else Mosquitto
started on a free port with the queue limits of deploy/mosquitto/zerocarbon.conf
(``max_queued_messages 0``: no message is dropped to a slow subscriber).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import io
import json
import multiprocessing
import os
import pstats
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import aiomqtt

from zerocarbon.batch import ReadingBatch, SeriesRegistry
from zerocarbon.clock import SystemClock
from zerocarbon.config import DeviceRole, MqttConfig, MqttDevice
from zerocarbon.ingest.mqtt.collector import MqttCollector
from zerocarbon.ingest.pipeline import Pipeline
from zerocarbon.ingest.reading import Ack
from zerocarbon.netutil import free_tcp_port

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
T0_S = 1_767_225_600.0  # 2026-01-01T00:00:00Z, the payloads' first timestamp
STALL_S = 15.0  # no new message for this long: the run fails
FIELDS = {"p": "active_power_kw", "e": "energy_import_kwh"}


@dataclass(frozen=True, slots=True)
class Broker:
    host: str
    port: int

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"


def bench_devices(count: int, prefix: str) -> tuple[MqttDevice, ...]:
    """``count`` MQTT meters, each on a topic of its own under ``prefix``."""
    return tuple(
        MqttDevice(
            id=f"meter{i:03d}",
            role=DeviceRole.LOAD,
            protocol="mqtt",
            topic=f"{prefix}/meter{i:03d}",
            fields=dict(FIELDS),
        )
        for i in range(count)
    )


def device_topics(devices: tuple[MqttDevice, ...]) -> list[str]:
    """The topic of each of :func:`bench_devices`' meters, in order."""
    return [d.topic for d in devices if d.topic is not None]


# --- publisher (runs in a process of its own) -------------------------------------------


def payloads(topics: list[str], messages: int) -> Iterator[tuple[str, bytes]]:
    """(topic, JSON payload) of each message: the meters take turns, one reading of
    power and of the energy counter per meter and second."""
    n = len(topics)
    energy = [1000.0 + 37.0 * i for i in range(n)]
    for k in range(messages):
        i, tick = k % n, k // n
        power = 20.0 + 5.0 * i + ((tick * 7919 + i * 104729) % 1000) / 100.0
        energy[i] += power / 3600.0
        doc = {"ts": round(T0_S + tick, 3), "p": round(power, 3), "e": round(energy[i], 4)}
        yield topics[i], json.dumps(doc).encode()


def _remaining_length(n: int) -> bytes:
    out = bytearray()
    while True:
        n, byte = divmod(n, 128)
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _packet(kind: int, body: bytes) -> bytes:
    return bytes([kind]) + _remaining_length(len(body)) + body


def _utf8(text: str) -> bytes:
    raw = text.encode()
    return len(raw).to_bytes(2, "big") + raw


def publish(host: str, port: int, qos: int, topics: list[str], messages: int) -> None:
    """Send ``messages`` PUBLISH packets at ``qos`` on one MQTT 3.1.1 connection, as fast
    as the broker reads them; at QoS 1 wait for every PUBACK, then disconnect and wait
    for the broker to close (it has handled every packet then). Exits 1 on a shortfall."""
    packets = [
        _packet(
            0x30 | (qos << 1),
            _utf8(topic) + ((k % 65535) + 1).to_bytes(2, "big") * qos + payload,
        )
        for k, (topic, payload) in enumerate(payloads(topics, messages))
    ]
    with socket.create_connection((host, port)) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        client_id = f"zc-bench-pub-{os.getpid()}"
        sock.sendall(_packet(0x10, _utf8("MQTT") + bytes([4, 0x02, 0, 60]) + _utf8(client_id)))
        connack = sock.recv(4, socket.MSG_WAITALL)
        if connack != b"\x20\x02\x00\x00":
            sys.exit(f"publisher: broker refused the connection: {connack!r}")
        received = 0

        def drain() -> None:  # PUBACKs (4 bytes each) until the broker closes
            nonlocal received
            while chunk := sock.recv(1 << 16):
                received += len(chunk)

        reader = threading.Thread(target=drain, daemon=True)
        reader.start()
        for k in range(0, len(packets), 1000):
            sock.sendall(b"".join(packets[k : k + 1000]))
        if qos:
            deadline = time.monotonic() + 120
            while received < 4 * messages and time.monotonic() < deadline:
                time.sleep(0.01)
        sock.sendall(b"\xe0\x00")  # DISCONNECT
        reader.join(30)
    if qos and received != 4 * messages:
        sys.exit(f"publisher: {received // 4} of {messages} PUBACKs")


def start_publisher(
    broker: Broker, qos: int, topics: list[str], messages: int
) -> multiprocessing.process.BaseProcess:
    ctx = multiprocessing.get_context("spawn")
    proc = ctx.Process(target=publish, args=(broker.host, broker.port, qos, topics, messages))
    proc.start()
    return proc


def join_publisher(proc: multiprocessing.process.BaseProcess) -> None:
    proc.join(60)
    if proc.exitcode != 0:
        proc.kill()
        raise RuntimeError(f"publisher failed (exit code {proc.exitcode})")


# --- the two subscribers ----------------------------------------------------------------


async def wait_all(
    done: asyncio.Event,
    progress: Callable[[], int],
    expected: int,
    what: str,
    publisher: multiprocessing.process.BaseProcess,
) -> None:
    """Wait for ``done``; raise when ``progress()`` has not moved for STALL_S or the
    publisher failed."""
    last, since = -1, time.monotonic()
    while not done.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), 0.5)
        if publisher.exitcode not in (None, 0) and not done.is_set():
            raise RuntimeError(f"{what}: publisher failed (exit code {publisher.exitcode})")
        now = progress()
        if now != last:
            last, since = now, time.monotonic()
        elif not done.is_set() and time.monotonic() - since > STALL_S:
            raise RuntimeError(
                f"{what}: only {now} of {expected} messages arrived (none for {STALL_S:.0f} s)"
            )


class _Count:
    __slots__ = ("first", "n")

    def __init__(self) -> None:
        self.n = 0
        self.first = 0.0


async def bare_run(broker: Broker, topics: list[str], qos: int, messages: int) -> float:
    """msg/s of an aiomqtt subscriber that only counts the messages."""
    count = _Count()
    done = asyncio.Event()
    end = 0.0
    async with aiomqtt.Client(broker.host, port=broker.port) as client:
        for topic in topics:
            await client.subscribe(topic, qos=qos)

        async def receive() -> None:
            nonlocal end
            async for _message in client.messages:
                count.n += 1
                if count.n == 1:
                    count.first = time.perf_counter()
                if count.n == messages:
                    end = time.perf_counter()
                    done.set()
                    return

        receiving = asyncio.create_task(receive())
        proc = start_publisher(broker, qos, topics, messages)
        try:
            await wait_all(done, lambda: count.n, messages, f"bare subscriber QoS {qos}", proc)
        finally:
            receiving.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await receiving
            await asyncio.to_thread(join_publisher, proc)
    return messages / (end - count.first)


class CountingSink:
    """The pipeline's only sink: counts readings, notes when all have come."""

    name = "count"

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.readings = 0
        self.end = 0.0
        self.done = asyncio.Event()

    async def write_batch(self, batch: ReadingBatch) -> None:
        self.readings += len(batch)
        if self.readings >= self.expected and not self.done.is_set():
            self.end = time.perf_counter()
            self.done.set()


class StampedPut:
    """The collector's sink: ``pipeline.put``, noting the first put's time and closing
    the pipeline after the put that holds the last message (a put holds the messages of
    one event-loop turn; ``handled()`` counts the messages the collector decoded)."""

    def __init__(self, pipeline: Pipeline, messages: int, handled: Callable[[], int]) -> None:
        self._pipeline = pipeline
        self._put = pipeline.put
        self._handled = handled
        self.messages = messages
        self.puts = 0
        self.first = 0.0
        self.first_messages = 0  # messages in the first put (not counted in the rate)

    def __call__(self, batch: ReadingBatch, ack: Ack | None = None, /) -> Awaitable[None]:
        self.puts += 1
        if self.puts == 1:
            self.first = time.perf_counter()
            self.first_messages = self._handled()
        if self._handled() >= self.messages:
            return self._last(batch, ack)
        return self._put(batch, ack)

    async def _last(self, batch: ReadingBatch, ack: Ack | None) -> None:
        await self._put(batch, ack)
        await self._pipeline.close()


async def collector_run(
    broker: Broker, devices: tuple[MqttDevice, ...], qos: int, messages: int
) -> float:
    """msg/s of the MqttCollector into the Pipeline (counting sink)."""
    registry = SeriesRegistry([d.id for d in devices])
    sink = CountingSink(len(FIELDS) * messages)
    pipeline = Pipeline([sink])
    config = MqttConfig.model_validate({"url": broker.url, "qos": qos})
    collector: MqttCollector  # bound below; handled() reads it at call time

    def handled() -> int:
        return collector.stats.messages

    put = StampedPut(pipeline, messages, handled)
    collector = MqttCollector(config, devices, SystemClock(), put, registry)
    running = asyncio.create_task(pipeline.run())
    collecting = asyncio.create_task(collector.run())
    proc = None
    try:
        async with asyncio.timeout(10):
            await collector.subscribed.wait()
        proc = start_publisher(broker, qos, device_topics(devices), messages)
        await wait_all(sink.done, handled, messages, f"collector QoS {qos}", proc)
        async with asyncio.timeout(10):
            await running  # closed after the last put: every ack has been called
    finally:
        collecting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await collecting
        if not running.done():
            running.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await running
        if proc is not None:
            await asyncio.to_thread(join_publisher, proc)
    stats = collector.stats
    expected_acks = messages if qos == 1 else 0
    if (
        stats.messages != messages
        or stats.bad_payloads
        or stats.readings != len(FIELDS) * messages
        or sink.readings != len(FIELDS) * messages
        or stats.acked != expected_acks
    ):
        raise RuntimeError(f"collector QoS {qos}: {stats}; sink counted {sink.readings}")
    return (messages - put.first_messages) / (sink.end - put.first)


# --- broker and main ----------------------------------------------------------------------


@contextlib.contextmanager
def mosquitto() -> Iterator[Broker]:
    """Mosquitto on a free port with the queue limits of deploy/mosquitto/zerocarbon.conf
    (no persistence file)."""
    port = free_tcp_port()
    folder = Path(tempfile.mkdtemp(prefix="zc-bench-mqtt-"))
    conf = folder / "mosquitto.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\nmax_queued_messages 0\n"
        "max_queued_bytes 536870912\nmax_inflight_messages 100\n"
    )
    log_path = folder / "mosquitto.log"
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen(
            [MOSQUITTO, "-c", str(conf)], stdout=log_file, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + 10
        while not _listening(port):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"mosquitto did not start: {log_path.read_text()}")
            time.sleep(0.02)
        yield Broker("127.0.0.1", port)
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(folder, ignore_errors=True)


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


async def bench(broker: Broker, messages: int, device_count: int, repeat: int) -> None:
    devices = bench_devices(device_count, f"zcbench/{secrets.token_hex(4)}")
    topics = device_topics(devices)
    rates: dict[tuple[str, int], list[float]] = {
        (kind, qos): [] for kind in ("bare", "collector") for qos in (1, 0)
    }
    for r in range(repeat):
        for qos in (1, 0):
            order = ("bare", "collector") if r % 2 == 0 else ("collector", "bare")
            for kind in order:
                if kind == "bare":
                    rate = await bare_run(broker, topics, qos, messages)
                else:
                    rate = await collector_run(broker, devices, qos, messages)
                rates[kind, qos].append(rate)
                print(f"  run {r + 1} QoS {qos} {kind:9s} {rate:>9,.0f} msg/s", file=sys.stderr)
    med = {key: statistics.median(v) for key, v in rates.items()}
    print(
        f"messages={messages} devices={device_count} repeat={repeat} (medians, min-max); "
        f"broker {broker.url}"
    )
    for qos in (1, 0):
        for kind, label in (
            ("bare", "bare aiomqtt subscriber (ceiling)"),
            ("collector", "MqttCollector -> Pipeline     "),
        ):
            v = rates[kind, qos]
            print(f"QoS {qos} {label}: {med[kind, qos]:>9,.0f} msg/s ({min(v):,.0f}-{max(v):,.0f})")
    for qos in (1, 0):
        print(f"ratio collector/ceiling QoS {qos}: {med['collector', qos] / med['bare', qos]:.2f}")
    value, ceiling = med["collector", 1], med["bare", 1]
    print(
        json.dumps(
            {
                "metric": "mqtt_messages_per_s",
                "value": round(value, 1),
                "ceiling": round(ceiling, 1),
                "ratio": round(value / ceiling, 4),
            }
        )
    )


async def profile(broker: Broker, messages: int, device_count: int, qos: int, out: str) -> None:
    devices = bench_devices(device_count, f"zcbench/{secrets.token_hex(4)}")
    profiler = cProfile.Profile()
    profiler.enable()
    rate = await collector_run(broker, devices, qos, messages)
    profiler.disable()
    profiler.dump_stats(out)
    text = io.StringIO()
    stats = pstats.Stats(profiler, stream=text)
    stats.sort_stats("tottime").print_stats(30)
    stats.sort_stats("cumulative").print_stats(40)
    print(text.getvalue())
    print(f"collector QoS {qos} under cProfile: {rate:,.0f} msg/s; stats in {out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--devices", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--profile", metavar="FILE", help="profile one collector run only")
    parser.add_argument("--qos", type=int, choices=(0, 1), default=1, help="with --profile")
    args = parser.parse_args()
    url = os.environ.get("ZEROCARBON_BENCH_MQTT_URL")
    with contextlib.ExitStack() as stack:
        if url:
            parsed = urlparse(url)
            broker = Broker(parsed.hostname or "127.0.0.1", parsed.port or 1883)
        else:
            broker = stack.enter_context(mosquitto())
        if args.profile:
            asyncio.run(profile(broker, args.messages, args.devices, args.qos, args.profile))
        else:
            asyncio.run(bench(broker, args.messages, args.devices, args.repeat))


if __name__ == "__main__":
    main()
