"""Modbus TCP polling throughput: our link scheduler against a bare pymodbus read loop.

Devices: ``--links`` (20) simulated Eastron SDM630 meters (the bundled profile, its
register map of the "Eastron SDM630 Modbus Protocol V2"), each on an endpoint of its own
(our :class:`~zerocarbon.simulators.modbus_server.ModbusTcpServer`, one unit each), plus
one gateway endpoint serving 20 more units. Each meter is read as one block of 76 input
registers (30001..30076: voltage, total power, frequency, import and export energy; the
device's ``max_gap_registers`` = 70 fills the gaps), 5 points per request. The servers
run in a process of their own, so that they share neither event loop nor interpreter
with the clients measured; on a 2-core machine the two processes still share the cores.

Ceiling, in the same run: a bare pymodbus 3.16 ``AsyncModbusTcpClient`` read loop over
the same 20 endpoints (one client per endpoint, all in parallel, the same block, no
decoding), for the same duration.

Measured: 20 :class:`~zerocarbon.ingest.modbus.collector.ModbusLinkCollector` (one per
endpoint, ``poll_interval_s`` 1 us: every poll is due at once, as fast as the link
answers) with our transport, decoding every point, the torn-read guard on, each poll's
batch handed to a sink that counts its readings: points/s and requests/s.

Also, a Node-RED-style gateway: one connection to the 20-unit endpoint, 20 devices on it
with a window of 8 and of 20 outstanding requests (``--windows``), and pymodbus's single
client reading the 20 units in turn, for comparison.

Medians over ``--runs`` runs (alternating which of the two goes first); the server
process's and the client's CPU use during each measurement are printed, so a
server-bound result shows, and requests per client CPU-second, the code's cost per
request whatever else the machine runs.
Last line: ``{"metric": "modbus_points_per_s", "value": <scheduler>, "ceiling":
<bare pymodbus>, "ratio": ...}``.

    python bench/modbus_poll.py [--seconds 3] [--runs 5] [--links 20] [--windows 8,20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import multiprocessing
import multiprocessing.connection
import os
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from pymodbus.client import AsyncModbusTcpClient

from zerocarbon.batch import ReadingBatch, SeriesRegistry
from zerocarbon.clock import SystemClock
from zerocarbon.config import DeviceRole, ModbusTcpDevice
from zerocarbon.ingest.modbus.collector import ModbusLinkCollector
from zerocarbon.ingest.modbus.planner import needed_points, plan_reads
from zerocarbon.ingest.reading import Ack
from zerocarbon.metering.profile import DeviceProfile, load_profile

PROFILE = "eastron_sdm630"
GAP_FILL = 70  # registers: the SDM630 points at 0, 52 and 70..75 in one block of 76
VALUES = {
    "voltage_v": 231.4,
    "active_power_kw": 87.25,
    "frequency_hz": 50.01,
    "energy_import_kwh": 123_456.7,
    "energy_export_kwh": 1_234.5,
}
GATEWAY_UNITS = 20
HOST = "127.0.0.1"
(BLOCK,) = plan_reads(needed_points(load_profile(PROFILE)), max_gap_registers=GAP_FILL)
POINTS_PER_REQUEST = len(BLOCK.points)


# --- the servers (a process of their own) -----------------------------------------------


def serve(links: int, conn: multiprocessing.connection.Connection) -> None:
    """Start ``links`` one-unit endpoints and one 20-unit gateway; send their ports;
    serve until anything arrives on ``conn``."""
    asyncio.run(_serve(links, conn))


async def _serve(links: int, conn: multiprocessing.connection.Connection) -> None:
    from zerocarbon.simulators.modbus_server import ModbusTcpServer
    from zerocarbon.simulators.register_bank import RegisterBank

    profile = load_profile(PROFILE)

    def bank() -> RegisterBank:
        b = RegisterBank(profile, gap_fill_registers=GAP_FILL)
        b.update(VALUES)
        return b

    servers = [ModbusTcpServer(HOST, 0, {1: bank()}) for _ in range(links)]
    servers.append(ModbusTcpServer(HOST, 0, {u: bank() for u in range(1, GATEWAY_UNITS + 1)}))
    for server in servers:
        await server.start()
    conn.send([s.port for s in servers])
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_reader(conn.fileno(), stop.set)
    await stop.wait()
    for server in servers:
        await server.close()


def cpu_s(pid: int) -> float:
    """User + system CPU time of process ``pid`` [s] (Linux /proc)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --- what is measured ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Result:
    requests: int
    points: int
    elapsed_s: float
    server_cpu: float  # server process CPU time / elapsed (1.0 = one core busy)
    client_cpu: float  # this process's CPU time / elapsed

    @property
    def requests_per_s(self) -> float:
        return self.requests / self.elapsed_s

    @property
    def points_per_s(self) -> float:
        return self.points / self.elapsed_s


async def timed(
    server_pid: int, seconds: float, start: Callable[[], Awaitable[Callable[[], tuple[int, int]]]]
) -> Result:
    """Run what ``start`` starts for ``seconds`` (after it connected); ``start``
    returns a function giving (requests, points) so far and stopping the work."""
    cpu0, own0 = cpu_s(server_pid), time.process_time()
    t0 = time.perf_counter()
    stop = await start()
    t_connected = time.perf_counter()
    await asyncio.sleep(seconds)
    requests, points = stop()
    elapsed_s = time.perf_counter() - t_connected
    wall_s = time.perf_counter() - t0
    cpu, own = (cpu_s(server_pid) - cpu0) / wall_s, (time.process_time() - own0) / wall_s
    await asyncio.sleep(0.2)  # let the stopped tasks unwind
    return Result(requests, points, elapsed_s, cpu, own)


def bare_pymodbus(
    ports: list[int], units: list[int]
) -> Callable[[], Awaitable[Callable[[], tuple[int, int]]]]:
    """One pymodbus client per port; each reads the block from ``units`` in turn."""

    async def start() -> Callable[[], tuple[int, int]]:
        clients = [AsyncModbusTcpClient(HOST, port=p, timeout=5, retries=0) for p in ports]
        for client in clients:
            if not await client.connect():
                raise RuntimeError(f"pymodbus could not connect to {client}")
        counts = [0] * len(clients)
        stopped = False

        async def loop(i: int, client: AsyncModbusTcpClient) -> None:
            address, count = BLOCK.address, BLOCK.count
            while not stopped:
                for unit in units:
                    response = await client.read_input_registers(
                        address, count=count, device_id=unit
                    )
                    if response.isError() or len(response.registers) != count:
                        raise RuntimeError(f"bad answer {response}")
                    counts[i] += 1

        tasks = [asyncio.create_task(loop(i, c)) for i, c in enumerate(clients)]

        def stop() -> tuple[int, int]:
            nonlocal stopped
            stopped = True
            done = sum(counts)
            for task in tasks:
                task.cancel()

            def close() -> None:  # after the cancelled loops have ended
                for client in clients:
                    client.close()

            asyncio.get_running_loop().call_later(0.1, close)
            return done, done * POINTS_PER_REQUEST

        return stop

    return start


def meter(i: int, port: int, unit: int, window: int) -> ModbusTcpDevice:
    return ModbusTcpDevice(
        id=f"meter{i:02d}",
        role=DeviceRole.LOAD,
        protocol="modbus_tcp",
        profile=PROFILE,
        host=HOST,
        port=port,
        device_id=unit,
        poll_interval_s=1e-6,  # always due: poll as fast as the link answers
        timeout_s=5.0,
        max_gap_registers=GAP_FILL,
        max_in_flight=window,
    )


def scheduler(
    links: list[list[ModbusTcpDevice]],
) -> Callable[[], Awaitable[Callable[[], tuple[int, int]]]]:
    """One ModbusLinkCollector per list of devices (one endpoint each)."""

    async def start() -> Callable[[], tuple[int, int]]:
        profile: DeviceProfile = load_profile(PROFILE)
        registry = SeriesRegistry([d.id for devices in links for d in devices])
        points = 0

        async def sink(batch: ReadingBatch, ack: Ack | None = None) -> None:
            nonlocal points
            points += len(batch)

        collectors = [
            ModbusLinkCollector(
                HOST,
                devices[0].port,
                [(d, profile) for d in devices],
                SystemClock(),
                sink,
                registry,
            )
            for devices in links
        ]
        for c in collectors:  # connect before the clock starts, as pymodbus's side does
            await c.tcp.connect()
        tasks = [asyncio.create_task(c.run()) for c in collectors]

        def stop() -> tuple[int, int]:
            requests, done = sum(c.tcp.requests for c in collectors), points
            for task in tasks:
                task.cancel()
            bad = [s for c in collectors for s in c.stats().values() if s.timeouts or s.errors]
            if bad:
                raise RuntimeError(f"failed requests during the bench: {bad}")
            return requests, done

        return stop

    return start


def show(label: str, results: list[Result]) -> tuple[float, float]:
    pts = statistics.median(r.points_per_s for r in results)
    req = statistics.median(r.requests_per_s for r in results)
    cpu = statistics.median(r.server_cpu for r in results)
    own = statistics.median(r.client_cpu for r in results)
    per_cpu_s = statistics.median(r.requests_per_s / max(r.client_cpu, 1e-9) for r in results)
    print(
        f"  {label:<42} {pts:>9,.0f} points/s {req:>8,.0f} req/s"
        f"  CPU: server {cpu:4.0%}, client {own:4.0%} ({per_cpu_s:,.0f} req/client CPU-s)"
    )
    return pts, req


async def bench(
    seconds: float, runs: int, links: int, windows: list[int], server_pid: int, ports: list[int]
) -> None:
    meter_ports, gateway_port = ports[:links], ports[links]
    per_link = [[meter(i, p, 1, 1)] for i, p in enumerate(meter_ports)]
    ours: list[Result] = []
    bare: list[Result] = []
    ratios: list[float] = []
    for run in range(runs):
        first_ours = run % 2 == 0
        pair: dict[str, Result] = {}
        for which in ("ours", "bare") if first_ours else ("bare", "ours"):
            start = scheduler(per_link) if which == "ours" else bare_pymodbus(meter_ports, [1])
            pair[which] = await timed(server_pid, seconds, start)
        ours.append(pair["ours"])
        bare.append(pair["bare"])
        ratios.append(pair["ours"].points_per_s / pair["bare"].points_per_s)
        print(
            f"run {run + 1}: scheduler {pair['ours'].points_per_s:,.0f} points/s, "
            f"bare pymodbus {pair['bare'].points_per_s:,.0f} points/s, "
            f"ratio {ratios[-1]:.2f}"
        )
    gateway_runs = min(runs, 3)
    gw_ours: dict[int, list[Result]] = {w: [] for w in windows}
    gw_bare: list[Result] = []
    units = list(range(1, GATEWAY_UNITS + 1))
    for _ in range(gateway_runs):
        for w in windows:
            devices = [[meter(u, gateway_port, u, w) for u in units]]
            gw_ours[w].append(await timed(server_pid, seconds, scheduler(devices)))
        gw_bare.append(await timed(server_pid, seconds, bare_pymodbus([gateway_port], units)))
    print(f"\nmedians over {runs} runs of {seconds:g} s, {links} links, ", end="")
    print(f"{POINTS_PER_REQUEST} points/request:")
    value, _ = show(f"scheduler, {links} links, window 1", ours)
    ceiling, _ = show(f"bare pymodbus loop, {links} links", bare)
    print(f"  ratio (median of the runs' ratios)              {statistics.median(ratios):.2f}")
    print(f"Node-RED-style gateway: one connection, 20 unit ids ({gateway_runs} runs):")
    for w in windows:
        show(f"scheduler, window {w}", gw_ours[w])
    show("bare pymodbus, one client, units in turn", gw_bare)
    ratio = statistics.median(ratios)
    print(
        json.dumps(
            {
                "metric": "modbus_points_per_s",
                "value": round(value),
                "ceiling": round(ceiling),
                "ratio": round(ratio, 3),
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--links", type=int, default=20)
    parser.add_argument(
        "--windows", default="8,20", help="gateway windows to measure, comma-separated"
    )
    args = parser.parse_args()
    # pymodbus logs an answer that lands after its loop was stopped; not a bench error
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe()
    server = context.Process(target=serve, args=(args.links, child), daemon=True)
    server.start()
    try:
        ports = parent.recv()
        assert server.pid is not None
        windows = [int(w) for w in args.windows.split(",")]
        asyncio.run(bench(args.seconds, args.runs, args.links, windows, server.pid, ports))
    finally:
        parent.send("stop")
        server.join(10)
        if server.is_alive():
            server.terminate()


if __name__ == "__main__":
    main()
