"""A small HTTP server speaking the part of Grafana's HTTP API that a push uses, checking
every request against the documentation (Grafana documentation, "HTTP API": "Folder
API" and "Dashboard API"):

- ``GET /api/folders/:uid``: 200 with the folder, 404 ``{"message": "folder not found"}``;
- ``POST /api/folders`` with JSON ``{"uid", "title"}``: 200 with the folder; 409 when
  the uid exists;
- ``POST /api/dashboards/db`` with JSON ``{"dashboard": {...}, "folderUid", "overwrite",
  "message"}``: 200 ``{"id", "uid", "url", "status": "success", "version", "slug"}``;
  412 when the dashboard exists and ``overwrite`` is not true; 400 without a title;
- every request: ``Authorization: Bearer <token>`` (401 otherwise), JSON bodies with
  ``Content-Type: application/json``.

It keeps folders and dashboards in memory (versions count saves) and records each
request; a test can make it fail the save of one dashboard uid with a given status.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["FakeGrafana", "Recorded"]

_DASHBOARD_KEYS = {"dashboard", "folderUid", "overwrite", "message", "folderId"}


@dataclass(frozen=True, slots=True)
class Recorded:
    method: str
    path: str
    body: Any


@dataclass
class FakeGrafana:
    token: str
    folders: dict[str, dict[str, Any]] = field(default_factory=dict)
    dashboards: dict[str, dict[str, Any]] = field(default_factory=dict)  # uid -> saved
    requests: list[Recorded] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)  # requests off the documented API
    fail_dashboard: tuple[str, int] | None = None  # (uid, HTTP status) to refuse
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> FakeGrafana:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

            def _reply(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                body = None
                if raw:
                    if not (self.headers.get("Content-Type") or "").startswith("application/json"):
                        fake.violations.append(f"{self.command} {self.path}: not JSON")
                    body = json.loads(raw)
                fake.requests.append(Recorded(self.command, self.path, body))
                if self.headers.get("Authorization") != f"Bearer {fake.token}":
                    self._reply(401, {"message": "Unauthorized"})
                    return
                status, answer = fake.answer(self.command, self.path, body)
                self._reply(status, answer)

            do_GET = _handle  # noqa: N815
            do_POST = _handle  # noqa: N815
            do_PUT = _handle  # noqa: N815
            do_DELETE = _handle  # noqa: N815

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._server is not None and self._thread is not None
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def answer(self, method: str, path: str, body: Any) -> tuple[int, dict[str, Any]]:
        if method == "GET" and path.startswith("/api/folders/"):
            uid = path.removeprefix("/api/folders/")
            if uid in self.folders:
                return 200, self.folders[uid]
            return 404, {"message": "folder not found", "status": "not-found"}
        if method == "POST" and path == "/api/folders":
            if not isinstance(body, dict) or not body.get("title"):
                self.violations.append("POST /api/folders without a title")
                return 400, {"message": "folder title cannot be empty"}
            uid = body.get("uid") or f"auto{len(self.folders)}"
            if uid in self.folders:
                return 409, {"message": "a folder with the same uid already exists"}
            folder = {
                "id": len(self.folders) + 1,
                "uid": uid,
                "title": body["title"],
                "url": f"/dashboards/f/{uid}/",
                "version": 1,
            }
            self.folders[uid] = folder
            return 200, folder
        if method == "POST" and path == "/api/dashboards/db":
            return self._save_dashboard(body)
        self.violations.append(f"{method} {path}: not part of the push")
        return 404, {"message": "Not found"}

    def _save_dashboard(self, body: Any) -> tuple[int, dict[str, Any]]:
        if not isinstance(body, dict) or set(body) - _DASHBOARD_KEYS:
            self.violations.append(f"POST /api/dashboards/db: keys {sorted(body or {})}")
            return 400, {"message": "bad request"}
        dash = body.get("dashboard")
        if not isinstance(dash, dict) or not dash.get("title") or not dash.get("uid"):
            self.violations.append("POST /api/dashboards/db without dashboard title/uid")
            return 400, {"message": "Dashboard title cannot be empty"}
        folder = body.get("folderUid")
        if folder is not None and folder not in self.folders:
            return 400, {"message": "folder not found"}
        uid = dash["uid"]
        if self.fail_dashboard is not None and self.fail_dashboard[0] == uid:
            return self.fail_dashboard[1], {"message": "simulated failure"}
        old = self.dashboards.get(uid)
        if old is not None and body.get("overwrite") is not True:
            return 412, {
                "message": "The dashboard has been changed by someone else",
                "status": "version-mismatch",
            }
        version = 1 if old is None else old["version"] + 1
        self.dashboards[uid] = {"version": version, "folderUid": folder, "dashboard": dash}
        return 200, {
            "id": len(self.dashboards),
            "uid": uid,
            "url": f"/d/{uid}/x",
            "status": "success",
            "version": version,
            "slug": "x",
        }
