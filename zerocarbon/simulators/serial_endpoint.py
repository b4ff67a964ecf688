"""What a simulated device line on a serial port does besides answering: open the port,
serve it in a task, close it in order (the Modbus RTU and DL/T 645 line simulators)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from types import TracebackType
from typing import Self

from zerocarbon.ingest.serial_link import SerialSettings, open_serial

log = logging.getLogger(__name__)


class SerialEndpoint:
    """Opens ``port`` with ``settings`` and runs :meth:`_serve` on its streams until
    :meth:`close`; a subclass sets ``port`` and ``settings`` and answers in
    :meth:`_serve`. Use as ``async with``."""

    port: str
    settings: SerialSettings
    _task: asyncio.Task[None] | None = None
    _writer: asyncio.StreamWriter | None = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raise NotImplementedError

    async def start(self) -> None:
        """Open the port and serve until :meth:`close`."""
        reader, self._writer = await open_serial(self.port, self.settings)
        self._task = asyncio.create_task(
            self._serve(reader, self._writer), name=f"{type(self).__name__} {self.port}"
        )
        log.debug("%s serving %s", type(self).__name__, self.port)

    async def close(self) -> None:
        task, self._task = self._task, None
        writer, self._writer = self._writer, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
