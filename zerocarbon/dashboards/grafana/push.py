"""Upload the dashboards to a running Grafana through its HTTP API (with ``grafana_client``).

Idempotent: the site's folder has a stable uid (:func:`folder_uid`): it is looked up
(``GET /api/folders/:uid``) and created only when missing (``POST /api/folders``); each
dashboard is saved with ``POST /api/dashboards/db`` and ``overwrite: true`` into that
folder, so a second push leaves everything as it was but the dashboards' versions
(Grafana documentation, HTTP API: "Folder API", "Dashboard API"). Authentication: a
service account token, sent as ``Authorization: Bearer``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from grafana_client.api import GrafanaApi
from grafana_client.client import GrafanaClientError, GrafanaException

from zerocarbon.config import SiteConfig
from zerocarbon.dashboards.grafana.build import build_dashboards, folder_uid

__all__ = ["PushError", "PushResult", "PushedDashboard", "push_dashboards"]


class PushError(RuntimeError):
    """Grafana refused or could not be reached; the message names the step."""


@dataclass(frozen=True, slots=True)
class PushedDashboard:
    uid: str
    version: int  # the version Grafana stored
    url: str  # path of the dashboard in Grafana


@dataclass(frozen=True, slots=True)
class PushResult:
    folder_uid: str
    folder_created: bool  # False: the folder existed
    dashboards: tuple[PushedDashboard, ...]


def _describe(exc: Exception) -> str:
    if isinstance(exc, GrafanaException):
        return f"HTTP {exc.status_code}: {exc.message}"
    return f"{type(exc).__name__}: {exc}"


def push_dashboards(
    site: SiteConfig, grafana_url: str, token: str, *, timeout_s: float = 10.0
) -> PushResult:
    """Create the site's folder if missing and save every dashboard into it.

    Parameters
    ----------
    grafana_url : str
        Grafana's base URL (``http://host:3000``, with a sub-path if it is served
        under one).
    token : str
        A service account token (or API key) allowed to write dashboards and folders.
    timeout_s : float
        Timeout of each request [s].

    Raises
    ------
    PushError
        An HTTP error or a connection failure; the message names the folder or the
        dashboard.
    """
    api: Any = GrafanaApi.from_url(grafana_url.rstrip("/"), credential=token, timeout=timeout_s)
    fuid = folder_uid(site.site.name)
    title = f"zerocarbon: {site.site.name}"
    created = False
    try:
        api.folder.get_folder(fuid)
    except GrafanaClientError as exc:
        if exc.status_code != 404:
            raise PushError(f"folder {fuid}: GET /api/folders/{fuid}: {_describe(exc)}") from exc
        try:
            api.folder.create_folder(title, uid=fuid)
        except Exception as exc2:
            raise PushError(f"folder {fuid}: POST /api/folders: {_describe(exc2)}") from exc2
        created = True
    except Exception as exc:
        raise PushError(f"folder {fuid}: GET /api/folders/{fuid}: {_describe(exc)}") from exc
    pushed = []
    for d in build_dashboards(site):
        body = {
            "dashboard": d.to_json(),
            "folderUid": fuid,
            "overwrite": True,
            "message": "zerocarbon dashboards push",
        }
        try:
            reply: dict[str, Any] = api.dashboard.update_dashboard(body)
        except Exception as exc:
            raise PushError(
                f"dashboard {d.uid} ({d.model.title}): POST /api/dashboards/db: {_describe(exc)}"
            ) from exc
        pushed.append(
            PushedDashboard(
                uid=str(reply.get("uid", d.uid)),
                version=int(reply.get("version", 0)),
                url=str(reply.get("url", "")),
            )
        )
    return PushResult(fuid, created, tuple(pushed))
