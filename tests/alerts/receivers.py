"""Small real receivers for the delivery tests: an HTTP server and an SMTP server on
loopback, free ports, each answering from a script the test gives."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class HttpReceiver:
    """HTTP/1.1 server: answers the k-th request with ``answers[k]`` (status, JSON
    body), the last answer for every later one; records every request."""

    answers: list[tuple[int, dict[str, Any]]]
    port: int = 0  # 0: a free port
    requests: list[Request] = field(default_factory=list)
    _server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    async def __aenter__(self) -> HttpReceiver:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                line = await reader.readline()
                if not line:
                    return
                method, target, _ = line.decode().split(" ", 2)
                length = 0
                while (header := await reader.readline()) not in (b"\r\n", b""):
                    name, _, value = header.decode().partition(":")
                    if name.strip().lower() == "content-length":
                        length = int(value.strip())
                body = await reader.readexactly(length)
                parts = urlsplit(target)
                self.requests.append(Request(method, parts.path, parse_qs(parts.query), body))
                k = min(len(self.requests), len(self.answers)) - 1
                status, answer = self.answers[k]
                data = json.dumps(answer).encode()
                writer.write(
                    f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(data)}\r\n\r\n".encode()
                    + data
                )
                await writer.drain()
        finally:
            writer.close()


@dataclass
class SmtpReceiver:
    """Minimal SMTP server (RFC 5321 commands HELO/EHLO, MAIL, RCPT, DATA, QUIT):
    refuses DATA with 451 ``fail_first`` times, then accepts; keeps accepted messages."""

    fail_first: int = 0
    messages: list[bytes] = field(default_factory=list)
    _server: asyncio.Server | None = None
    _refused: int = 0

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def __aenter__(self) -> SmtpReceiver:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        def say(text: str) -> None:
            writer.write(f"{text}\r\n".encode())

        try:
            say("220 test ESMTP")
            while line := await reader.readline():
                verb = line.decode().strip().split(" ")[0].upper()
                if verb in ("EHLO", "HELO"):
                    say("250 test")
                elif verb in ("MAIL", "RCPT", "RSET", "NOOP"):
                    say("250 ok")
                elif verb == "DATA":
                    say("354 go ahead")
                    await writer.drain()
                    data = b""
                    while (chunk := await reader.readline()) not in (b".\r\n", b""):
                        data += chunk
                    if self._refused < self.fail_first:
                        self._refused += 1
                        say("451 try again later")
                    else:
                        self.messages.append(data)
                        say("250 queued")
                elif verb == "QUIT":
                    say("221 bye")
                    await writer.drain()
                    return
                else:
                    say("502 not implemented")
                await writer.drain()
        finally:
            writer.close()
