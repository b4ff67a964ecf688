"""The live page at ``/``: served, and self-contained (factory LANs have no internet)."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from typing import Literal

import asyncpg
import httpx
import pytest

from zerocarbon.api.app import create_app
from zerocarbon.api.auth import Role, new_token
from zerocarbon.api.server import api_server
from zerocarbon.dashboards.page import STATIC_DIR
from zerocarbon.netutil import free_tcp_port
from zerocarbon.settings import Settings
from zerocarbon.storage import alerts, tokens
from zerocarbon.storage.alerts import AlertChange

ASSETS = ("index.html", "app.js", "style.css")
URL = re.compile(r"https?://|//[a-z0-9.-]+\.[a-z]{2,}/", re.IGNORECASE)


@pytest.mark.parametrize("name", ASSETS)
def test_no_internet_urls_in_assets(name: str) -> None:
    text = (STATIC_DIR / name).read_text(encoding="utf-8")
    assert not URL.search(text), f"{name} refers to {URL.search(text)}"
    assert "@import" not in text and "fonts." not in text


async def test_index_is_served_at_root(page_client: httpx.AsyncClient) -> None:
    res = await page_client.get("/")
    assert res.status_code == 200
    assert res.headers["content-type"].startswith("text/html")
    assert res.text == (STATIC_DIR / "index.html").read_text(encoding="utf-8")
    refs = re.findall(r'(?:src|href)="([^"]+)"', res.text)
    assert "static/app.js" in refs and "static/style.css" in refs
    for ref in refs:
        if ref.startswith("data:"):
            continue
        assert not ref.startswith("/"), (
            f"{ref}: relative URLs keep the page working behind a prefix"
        )
        asset = await page_client.get("/" + ref)
        assert asset.status_code == 200, ref


@pytest.mark.parametrize(
    ("path", "content_type"),
    [("/static/app.js", "javascript"), ("/static/style.css", "text/css")],
)
async def test_static_assets(page_client: httpx.AsyncClient, path: str, content_type: str) -> None:
    res = await page_client.get(path)
    assert res.status_code == 200
    assert content_type in res.headers["content-type"]
    assert res.text == (STATIC_DIR / path.removeprefix("/static/")).read_text(encoding="utf-8")


async def test_page_uses_the_api(page_client: httpx.AsyncClient) -> None:
    script = (await page_client.get("/static/app.js")).text
    assert 'new EventSource("api/v1/live")' in script
    assert 'fetch("api/v1/devices"' in script
    for event in ("snapshot", "readings", "hourly"):
        assert f'addEventListener("{event}"' in script


async def test_unknown_static_file_is_404(page_client: httpx.AsyncClient) -> None:
    assert (await page_client.get("/static/nope.js")).status_code == 404


# --- the alerts panel ------------------------------------------------------------------


def script() -> str:
    return (STATIC_DIR / "app.js").read_text(encoding="utf-8")


def test_alerts_panel_is_in_the_page() -> None:
    html = (STATIC_DIR / "index.html").read_text(encoding="utf-8")
    for element_id in (
        "alerts-panel",
        "alerts-title-text",
        "alert-list",
        "alerts-empty",
        "alerts-msg",
        "token-form",
        "lang-toggle",
    ):
        assert f'id="{element_id}"' in html, element_id
    assert re.search(r'<input id="token-input" type="password"', html)
    assert 'role="status"' in html  # errors are told in the panel, not by alert()
    assert "alert(" not in script().replace("putAlert(", "").replace("onAlert(", "")


def test_alerts_panel_texts_in_both_languages() -> None:
    js = script()
    for english, chinese in (
        ("Alerts", "告警"),
        ("Acknowledge", "确认"),
        ("No active alerts", "当前无告警"),
        ("acknowledged by", "确认"),
        ("critical", "严重"),
    ):
        assert f'"{english}' in js or f"`{english}" in js, english
        assert chinese in js, chinese
    assert "messages[state.lang]" in js  # the message in the panel's language


def test_script_acknowledges_with_a_bearer_token() -> None:
    js = script()
    ack = re.search(
        r"fetch\(`api/v1/alerts/\$\{encodeURIComponent\(id\)\}/ack`, \{(.*?)\}\);", js, re.S
    )
    assert ack, "app.js does not POST to api/v1/alerts/{id}/ack"
    assert 'method: "POST"' in ack[1] and "...authHeaders()" in ack[1]
    assert "Authorization: `Bearer ${token}`" in js
    assert "sessionStorage.getItem(TOKEN_KEY)" in js and "sessionStorage.setItem(TOKEN_KEY" in js
    # reads send the token too: the devices, and the stream read with fetch
    assert 'fetch("api/v1/devices", { cache: "no-store", headers: authHeaders() })' in js
    assert re.search(r'fetch\("api/v1/live", \{\s*headers: \{ \.\.\.authHeaders\(\)', js)
    assert 'addEventListener("alert", parse(onAlert))' in js


def test_fields_the_script_reads_are_served() -> None:
    from zerocarbon.api.schemas import Alert, LiveAlertEvent, LiveSnapshot

    js = script()
    read = set(re.findall(r"\balert\.(\w+)", js))
    assert {"rule", "subject", "since", "acked", "acked_by", "messages"} <= read
    assert read <= set(Alert.model_fields), read - set(Alert.model_fields)
    assert "alerts" in LiveSnapshot.model_fields and "snap.alerts" in js
    assert "alert" in LiveAlertEvent.model_fields and "item.alert" in js


NODE = shutil.which("node")


@pytest.mark.skipif(NODE is None, reason="node is not installed")
def test_script_parses() -> None:
    assert NODE is not None
    result = subprocess.run(
        [NODE, "--check", str(STATIC_DIR / "app.js")], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr


# app.js in node (fetch, streams) with just enough of a DOM: it reads the live stream
# with the stored token, lists the alert, acknowledges it and drops it once resolved
HARNESS_JS = r"""
const fs = require("fs");
function makeEl(id) {
  const listeners = {};
  const classes = new Set();
  return {
    id, children: [], dataset: {}, style: { setProperty() {} }, hidden: false, value: "",
    disabled: false, type: "", lang: "", clientWidth: 0, clientHeight: 0, innerHTML: "",
    _text: "",
    get textContent() {
      return [this._text, ...this.children.map((c) => c.textContent)].join(" ").trim();
    },
    set textContent(v) { this._text = String(v); this.children = []; },
    get className() { return [...classes].join(" "); },
    set className(v) {
      classes.clear();
      String(v).split(/\s+/).filter(Boolean).forEach((c) => classes.add(c));
    },
    classList: {
      toggle(c, on) {
        if (on === undefined) on = !classes.has(c);
        if (on) classes.add(c); else classes.delete(c);
      },
      add(...cs) { cs.forEach((c) => classes.add(c)); },
      remove(...cs) { cs.forEach((c) => classes.delete(c)); },
      contains(c) { return classes.has(c); },
    },
    addEventListener(t, f) { (listeners[t] ||= []).push(f); },
    fire(t) { (listeners[t] || []).forEach((f) => f({ preventDefault() {} })); },
    setAttribute() {}, focus() {},
    append(...cs) { this.children.push(...cs); },
    replaceChildren(...cs) { this.children = cs; },
  };
}
const els = {};
globalThis.document = {
  getElementById: (id) => (els[id] ||= makeEl(id)), createElement: (t) => makeEl(t),
  body: makeEl("body"), documentElement: makeEl("html"), title: "",
};
const storage = () => {
  const m = new Map();
  return {
    getItem: (k) => (m.has(k) ? m.get(k) : null),
    setItem: (k, v) => m.set(k, String(v)),
    removeItem: (k) => m.delete(k),
  };
};
globalThis.sessionStorage = storage();
globalThis.localStorage = storage();
globalThis.location = { search: "?lang=" + process.env.LANG_ASKED };
globalThis.ResizeObserver = class { observe() {} };
globalThis.requestAnimationFrame = (f) => setTimeout(f, 0);
globalThis.cancelAnimationFrame = clearTimeout;
globalThis.EventSource = class {
  static CONNECTING = 0; static OPEN = 1; static CLOSED = 2;
  constructor() { throw new Error("EventSource cannot send the token"); }
};
const realFetch = fetch;
globalThis.fetch = (url, opts = {}) => {
  if (opts.method === "POST") console.log("POST " + url + " " + (opts.headers || {}).Authorization);
  return realFetch(new URL(url, process.env.BASE), opts);
};
sessionStorage.setItem("zerocarbon.token", process.env.TOKEN);
eval(fs.readFileSync(process.env.APP, "utf8"));

const $ = (id) => document.getElementById(id);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
async function until(cond, what) {
  for (let i = 0; i < 400; i++) { if (cond()) return; await sleep(25); }
  throw new Error("waited in vain for " + what);
}
(async () => {
  await until(() => $("alert-list").children.length === 1, "the alert");
  const row = $("alert-list").children[0];
  console.log("ROW " + row.className + " | " + row.textContent);
  row.children[2].children.find((c) => c.className === "ack-btn").fire("click");
  await until(() => $("alerts-msg").textContent, "the answer");
  console.log("MSG " + $("alerts-msg").className + " | " + $("alerts-msg").textContent);
  console.log("AFTER " + $("alert-list").children[0].textContent);
  await until(() => $("alert-list").children.length === 0, "the resolution");
  console.log("EMPTY " + $("alerts-empty").hidden + " | " + $("alerts-empty").textContent);
  process.exit(0);
})().catch((e) => { console.log("FAIL " + e.message); process.exit(1); });
"""


def _change(state: Literal["firing", "resolved"], at_min: int) -> AlertChange:
    t0 = datetime(2026, 3, 1, 6, 20, tzinfo=UTC)
    return AlertChange(
        rule="grid_demand",
        kind="demand",
        subject="site",
        episode=1,
        state=state,
        severity="critical",
        ts=t0 + timedelta(minutes=at_min),
        since=t0,
        message_en="Demand over the contract",
        message_zh="需量超过合同值",
        evidence={"demand_kw": 520.0},
    )


@pytest.mark.skipif(NODE is None, reason="node is not installed")
@pytest.mark.parametrize(
    ("role", "lang", "answer"),
    [
        ("operator", "zh", "MSG alerts-msg alerts-msg-ok | 已以 shift-lead 的身份确认。"),
        ("operator", "en", "MSG alerts-msg alerts-msg-ok | Acknowledged as shift-lead."),
        ("viewer", "en", "MSG alerts-msg alerts-msg-error | Not allowed: this needs the operator"),
    ],
)
async def test_page_script_acknowledges_over_a_real_server(
    pg_url: str, pg_conn: asyncpg.Connection, role: str, lang: str, answer: str
) -> None:
    assert NODE is not None
    conn = pg_conn
    await conn.execute("TRUNCATE alerts, alert_events, api_tokens RESTART IDENTITY CASCADE")
    token = new_token()
    await tokens.insert_token(
        conn,
        name="shift-lead",
        prefix=token.prefix,
        role=role,
        site=None,
        token_hash=token.token_hash,
    )
    await alerts.record_change(conn, _change("firing", 0), [], datetime.now(UTC))
    # reads need a token: the page must send it on every request, the stream included
    settings = Settings(
        database_url=pg_url,
        site_timezone="Asia/Shanghai",
        live_interval_s=0.05,
        api_read_role=Role.VIEWER,
    )
    app = create_app(settings)
    port = free_tcp_port()
    server = api_server(app, settings, host="127.0.0.1", port=port, log_level="warning")
    task = asyncio.create_task(server.serve())
    env = dict(
        os.environ,
        BASE=f"http://127.0.0.1:{port}/",
        TOKEN=token.token,
        APP=str(STATIC_DIR / "app.js"),
        LANG_ASKED=lang,
    )
    lines: list[str] = []
    proc: asyncio.subprocess.Process | None = None
    try:
        async with asyncio.timeout(20):
            while not server.started:
                assert not task.done()
                await asyncio.sleep(0.01)
            proc = await asyncio.create_subprocess_exec(
                NODE, "-e", HARNESS_JS, env=env, stdout=asyncio.subprocess.PIPE
            )
            assert proc.stdout is not None
            while raw := await proc.stdout.readline():
                lines.append(raw.decode().rstrip())
                if lines[-1].startswith("AFTER"):
                    await alerts.record_change(conn, _change("resolved", 5), [], datetime.now(UTC))
            await proc.wait()
    finally:
        if proc is not None and proc.returncode is None:
            proc.kill()
            await proc.wait()
        server.should_exit = True
        await task
    text = "\n".join(lines)
    assert lines[0].startswith("ROW alert sev-critical"), text
    message = "需量超过合同值" if lang == "zh" else "Demand over the contract"
    assert message in lines[0] and "grid_demand" in lines[0], text
    assert f"POST api/v1/alerts/1/ack Bearer {token.token}" in lines, text
    assert any(line.startswith(answer) for line in lines), text
    if role == "operator":
        acked = "已由 shift-lead 确认" if lang == "zh" else "acknowledged by shift-lead"
        assert any(line.startswith("AFTER") and acked in line for line in lines), text
    else:  # refused: the row still offers the button
        assert any(line.startswith("AFTER") and "Acknowledge" in line for line in lines), text
    none = "当前无告警" if lang == "zh" else "No active alerts"
    assert lines[-1] == f"EMPTY false | {none}", text  # the resolved alert left the list
    assert proc is not None and proc.returncode == 0, text
