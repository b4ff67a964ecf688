// zerocarbon live page. No libraries, no network beyond this app: factory LANs have no
// internet. Data: GET api/v1/devices (roles) and the event stream api/v1/live
// (snapshot, readings, hourly, alert). "Now" is the data's newest reading, not the wall
// clock. Alerts are acknowledged with POST api/v1/alerts/{id}/ack and a bearer token
// (operator role), asked for once and kept in sessionStorage; when reads need a token
// (ZEROCARBON_API_READ_ROLE), every request sends it, and the stream is read with fetch
// (EventSource cannot send headers).
"use strict";

(() => {
  const HOUR_MS = 3600e3;
  const STALE_MS = 5 * 60e3; // a device value older than this (data time) is stale
  const IDLE_WALL_MS = 60e3; // connected but no new reading for this long: "no new data"
  const RETRY_MIN_MS = 2000;
  const RETRY_MAX_MS = 30000;
  const TOKEN_KEY = "zerocarbon.token"; // sessionStorage: forgotten when the tab closes
  const LANG_KEY = "zerocarbon.lang"; // localStorage: the alerts panel's language
  const SEVERITY_RANK = { critical: 0, warning: 1, info: 2 };

  const state = {
    siteName: "",
    timezone: "UTC",
    now: null, // ms, newest reading ts
    dayStart: null, // ms, UTC bounds of the site's day of "now"
    dayEnd: null,
    latest: {}, // device -> metric -> {value, ts (ms)}
    hourly: new Map(), // hour_start ms -> row
    devices: [], // from api/v1/devices
    lastReadingWall: 0,
    alerts: new Map(), // alert id -> alert (firing), from the snapshot and alert events
    lang: "en", // "en" or "zh": the alerts panel's texts and messages
  };

  // --- language of the alerts panel --------------------------------------------------

  const TEXTS = {
    en: {
      title: "Alerts",
      toggle: "中文",
      none: "No active alerts",
      ack: "Acknowledge",
      acking: "Acknowledging…",
      ackedBy: (who) => `acknowledged by ${who}`,
      since: (when) => `since ${when}`,
      severity: { critical: "critical", warning: "warning", info: "info" },
      tokenLabel: "API token",
      save: "Save",
      cancel: "Cancel",
      tokenForAck: "Acknowledging needs an operator token: enter it below.",
      tokenForRead: "This site needs a token to show its data: enter it below.",
      refused: (detail) => `Token refused (${detail}): enter a valid token.`,
      forbidden: (detail) => `Not allowed: ${detail}. Enter an operator token to acknowledge.`,
      gone: "That alert no longer exists.",
      failed: (detail) => `Could not acknowledge: ${detail}`,
      done: (who) => `Acknowledged as ${who}.`,
    },
    zh: {
      title: "告警",
      toggle: "EN",
      none: "当前无告警",
      ack: "确认",
      acking: "正在确认…",
      ackedBy: (who) => `已由 ${who} 确认`,
      since: (when) => `开始于 ${when}`,
      severity: { critical: "严重", warning: "警告", info: "提示" },
      tokenLabel: "API 令牌",
      save: "保存",
      cancel: "取消",
      tokenForAck: "确认告警需要操作员（operator）令牌，请在下方输入。",
      tokenForRead: "查看本站数据需要令牌，请在下方输入。",
      refused: (detail) => `令牌被拒绝（${detail}），请输入有效的令牌。`,
      forbidden: (detail) => `无权限：${detail}。请输入操作员令牌以确认告警。`,
      gone: "该告警已不存在。",
      failed: (detail) => `确认失败：${detail}`,
      done: (who) => `已以 ${who} 的身份确认。`,
    },
  };

  function pickLang() {
    const asked = new URLSearchParams(location.search).get("lang");
    if (asked === "zh" || asked === "en") return asked;
    const kept = localStorage.getItem(LANG_KEY);
    if (kept === "zh" || kept === "en") return kept;
    const preferred = navigator.languages || [navigator.language || "en"];
    return preferred.some((l) => String(l).toLowerCase().startsWith("zh")) ? "zh" : "en";
  }

  const tr = () => TEXTS[state.lang];

  // --- the API token (sessionStorage) --------------------------------------------------

  const getToken = () => sessionStorage.getItem(TOKEN_KEY) || "";

  /** The Authorization header of a stored token (RFC 6750), or none. */
  function authHeaders() {
    const token = getToken();
    return token ? { Authorization: `Bearer ${token}` } : {};
  }

  async function errorDetail(res) {
    try {
      const body = await res.json();
      return typeof body.detail === "string" ? body.detail : `HTTP ${res.status}`;
    } catch (err) {
      return `HTTP ${res.status}`;
    }
  }

  // --- formatting --------------------------------------------------------------------

  const fmtCache = new Map();
  function numberFormat(digits) {
    if (!fmtCache.has(digits)) {
      fmtCache.set(digits, new Intl.NumberFormat(undefined, {
        minimumFractionDigits: digits, maximumFractionDigits: digits,
      }));
    }
    return fmtCache.get(digits);
  }

  function fmtPower(kw) {
    if (kw === null || !Number.isFinite(kw)) return "—";
    return numberFormat(Math.abs(kw) >= 100 ? 0 : 1).format(kw);
  }

  function fmtAmount(x) {
    if (x === null || !Number.isFinite(x)) return "—";
    return numberFormat(Math.abs(x) >= 1000 ? 0 : 1).format(x);
  }

  function timeFormat(options) {
    const key = JSON.stringify(options) + state.timezone;
    if (!fmtCache.has(key)) {
      fmtCache.set(key, new Intl.DateTimeFormat("en-GB", { timeZone: state.timezone, ...options }));
    }
    return fmtCache.get(key);
  }

  const localHour = (ms) => timeFormat({ hour: "2-digit", hourCycle: "h23" }).format(ms);
  const localHm = (ms) =>
    timeFormat({ hour: "2-digit", minute: "2-digit", hourCycle: "h23" }).format(ms);

  // --- state updates -----------------------------------------------------------------

  function mergeLatest(latest) {
    for (const [device, metrics] of Object.entries(latest)) {
      const known = (state.latest[device] ||= {});
      for (const [metric, v] of Object.entries(metrics)) {
        known[metric] = { value: v.value, ts: Date.parse(v.ts) };
      }
    }
  }

  function putRows(rows) {
    for (const row of rows) state.hourly.set(Date.parse(row.hour_start), row);
  }

  function onSnapshot(snap) {
    state.siteName = snap.site_name;
    state.timezone = snap.site_timezone;
    state.now = snap.now ? Date.parse(snap.now) : null;
    state.dayStart = Date.parse(snap.day_start);
    state.dayEnd = Date.parse(snap.day_end);
    state.latest = {};
    mergeLatest(snap.latest);
    state.hourly = new Map();
    putRows(snap.hourly);
    state.alerts = new Map((snap.alerts || []).map((a) => [a.id, a]));
    state.lastReadingWall = Date.now();
    loadDevices(); // the site may have changed while we were away
    render();
    renderAlerts();
  }

  function onReadings(ev) {
    mergeLatest(ev.latest);
    if (ev.now) state.now = Math.max(state.now || 0, Date.parse(ev.now));
    state.lastReadingWall = Date.now();
    render();
  }

  function onHourly(ev) {
    putRows(ev.rows);
    render();
  }

  /** An alert that is no longer firing leaves the list; others are (re)placed. */
  function putAlert(alert) {
    if (alert.state === "firing") state.alerts.set(alert.id, alert);
    else state.alerts.delete(alert.id);
  }

  function onAlert(ev) {
    for (const item of ev.events) putAlert(item.alert);
    renderAlerts();
  }

  // --- devices -----------------------------------------------------------------------

  let devicesRetry = null;
  async function loadDevices() {
    clearTimeout(devicesRetry);
    try {
      const res = await fetch("api/v1/devices", { cache: "no-store", headers: authHeaders() });
      if (res.status === 401 || res.status === 403) {
        askToken(tr().tokenForRead, null);
        return; // saving a token loads the devices again
      }
      if (!res.ok) throw new Error(`HTTP ${res.status}`);
      state.devices = await res.json();
      render();
    } catch (err) {
      devicesRetry = setTimeout(loadDevices, 5000);
    }
  }

  /** Sum of a metric over the devices of a role: {value, ts (oldest), count}. */
  function byRole(role, metric) {
    const devices = state.devices.filter((d) => d.role === role);
    let value = 0;
    let ts = Infinity;
    let count = 0;
    for (const d of devices) {
      const v = state.latest[d.id] && state.latest[d.id][metric];
      if (!v) continue;
      value += v.value;
      ts = Math.min(ts, v.ts);
      count += 1;
    }
    return { devices: devices.length, count, value: count ? value : null, ts };
  }

  // --- rendering ---------------------------------------------------------------------

  const $ = (id) => document.getElementById(id);

  function setText(id, text) {
    const el = $(id);
    if (el.textContent !== text) el.textContent = text;
    if (el.classList.contains("value") || el.classList.contains("total-value")) {
      el.classList.toggle("no-value", text === "—");
    }
  }

  function isStale(agg) {
    return agg.value !== null && state.now !== null && state.now - agg.ts > STALE_MS;
  }

  function markStale(tileId, agg, detailId, detail) {
    const stale = isStale(agg);
    $(tileId).classList.toggle("stale", stale);
    setText(detailId, stale ? `no data since ${localHm(agg.ts)}` : detail);
  }

  function todayRows() {
    if (state.dayStart === null) return [];
    return [...state.hourly.entries()]
      .filter(([t]) => t >= state.dayStart && t < state.dayEnd)
      .sort((a, b) => a[0] - b[0])
      .map(([, row]) => row);
  }

  function render() {
    document.title = `${state.siteName || "zerocarbon"} — live`;
    setText("site-name", state.siteName || "zerocarbon");
    if (state.now !== null) {
      setText("data-time", timeFormat({
        hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23",
      }).format(state.now));
      setText("data-date", `${timeFormat({
        weekday: "short", day: "numeric", month: "short", year: "numeric",
      }).format(state.now)} · ${state.timezone}`);
    }
    renderTiles();
    const rows = todayRows();
    renderIntensity(rows);
    renderTotals(rows);
    drawChart(rows);
  }

  function renderTiles() {
    const grid = byRole("grid", "active_power_kw");
    const pv = byRole("pv", "active_power_kw");
    const battery = byRole("battery", "active_power_kw");
    const soc = byRole("battery", "state_of_charge_pct");

    setText("grid-value", fmtPower(grid.value === null ? null : Math.abs(grid.value)));
    let gridDetail = "\u00a0";
    if (grid.value !== null) {
      gridDetail = grid.value > 0.05 ? "importing" : grid.value < -0.05 ? "exporting" : "balanced";
    }
    markStale("tile-grid", grid, "grid-detail", gridDetail);

    setText("pv-value", fmtPower(pv.value));
    const rated = state.devices
      .filter((d) => d.role === "pv" && d.rated_power_kw)
      .reduce((sum, d) => sum + d.rated_power_kw, 0);
    let pvDetail = pv.devices ? "\u00a0" : "no PV on site";
    if (pv.value !== null && rated > 0) {
      pvDetail = `${Math.round((100 * Math.max(pv.value, 0)) / rated)} % of ${fmtPower(rated)} kW`;
    }
    markStale("tile-pv", pv, "pv-detail", pvDetail);

    setText("battery-value", fmtPower(battery.value === null ? null : Math.abs(battery.value)));
    let batteryDetail = battery.devices ? "\u00a0" : "no battery on site";
    if (battery.value !== null) {
      batteryDetail =
        battery.value > 0.05 ? "discharging" : battery.value < -0.05 ? "charging" : "idle";
    }
    markStale("tile-battery", battery, "battery-detail", batteryDetail);
    const socPct = soc.value === null ? null : soc.value / soc.count;
    const fill = $("soc-fill");
    fill.style.width = `${socPct === null ? 0 : Math.min(100, Math.max(0, socPct))}%`;
    fill.classList.toggle("low", socPct !== null && socPct < 20);
    setText("soc-text", socPct === null ? "SoC —" : `SoC ${Math.round(socPct)} %`);

    // Site load = grid + PV + battery (signs: grid + import, battery + discharge).
    // A role the site does not have counts as 0; one without a value yet leaves it unknown.
    const parts = [grid, pv, battery];
    const known = grid.value !== null && parts.every((p) => p.devices === 0 || p.value !== null);
    const load = known ? parts.reduce((sum, p) => sum + (p.value || 0), 0) : null;
    setText("load-value", fmtPower(load));
    const loadAgg = {
      value: load,
      ts: Math.min(...parts.filter((p) => p.value !== null).map((p) => p.ts)),
    };
    markStale("tile-load", loadAgg, "load-detail", "grid + PV + battery");
  }

  function renderIntensity(rows) {
    const tile = $("tile-intensity");
    const row = rows.length ? rows[rows.length - 1] : null;
    const value = row ? row.intensity_kg_per_kwh : null;
    setText("intensity-value", value === null || value === undefined ? "—" : value.toFixed(3));
    tile.classList.remove("intensity-low", "intensity-mid", "intensity-high");
    if (!row) {
      setText("intensity-detail", "this hour: no result yet");
      return;
    }
    const start = Date.parse(row.hour_start);
    const current = state.now !== null && state.now >= start && state.now < start + HOUR_MS;
    const span = `${localHm(start)}–${localHm(start + HOUR_MS)}`;
    setText("intensity-detail", current ? `this hour (${span})` : `hour ${span}`);
    if (value !== null && row.location_factor_kg_per_kwh > 0) {
      const ratio = value / row.location_factor_kg_per_kwh;
      tile.classList.add(
        ratio < 0.5 ? "intensity-low" : ratio < 0.9 ? "intensity-mid" : "intensity-high",
      );
    }
  }

  function renderTotals(rows) {
    const sum = (key) => (rows.length ? rows.reduce((s, r) => s + (r[key] || 0), 0) : null);
    setText("total-import", fmtAmount(sum("grid_import_kwh")));
    setText("total-location", fmtAmount(sum("scope2_location_kg")));
    setText("total-market", fmtAmount(sum("scope2_market_kg")));
    setText("total-pv", fmtAmount(sum("pv_kwh")));
  }

  // --- alerts panel ------------------------------------------------------------------

  function alertTime(ms) {
    const sameDay = state.dayStart !== null && ms >= state.dayStart && ms < state.dayEnd;
    if (sameDay) return localHm(ms);
    return timeFormat({
      day: "numeric", month: "short", hour: "2-digit", minute: "2-digit", hourCycle: "h23",
    }).format(ms);
  }

  function element(tag, className, text) {
    const el = document.createElement(tag);
    if (className) el.className = className;
    if (text !== undefined) el.textContent = text;
    return el;
  }

  function alertRow(alert) {
    const t = tr();
    const severity = SEVERITY_RANK[alert.severity] === undefined ? "info" : alert.severity;
    const li = element("li", `alert sev-${severity}${alert.acked ? " acked" : ""}`);
    li.dataset.id = String(alert.id);
    const head = element("div", "alert-head");
    head.append(
      element("span", "alert-sev", t.severity[severity]),
      element("span", "alert-rule", alert.rule),
      element("span", "alert-subject", alert.subject),
    );
    const messages = alert.messages || {};
    const other = state.lang === "zh" ? "en" : "zh";
    const text = messages[state.lang] || messages[other] || "";
    const foot = element("div", "alert-foot");
    foot.append(element("span", "alert-since", t.since(alertTime(Date.parse(alert.since)))));
    if (alert.acked) {
      foot.append(element("span", "alert-acked", t.ackedBy(alert.acked_by || "?")));
    } else {
      const button = element("button", "ack-btn", t.ack);
      button.type = "button";
      button.addEventListener("click", () => acknowledge(alert.id, button));
      foot.append(button);
    }
    li.append(head, element("div", "alert-msg", text), foot);
    return li;
  }

  function renderAlerts() {
    const t = tr();
    $("alerts-panel").lang = state.lang === "zh" ? "zh-CN" : "en";
    setText("alerts-title-text", t.title);
    setText("lang-toggle", t.toggle);
    $("lang-toggle").lang = state.lang === "zh" ? "en" : "zh";
    setText("alerts-empty", t.none);
    setText("token-label", t.tokenLabel);
    setText("token-save", t.save);
    setText("token-cancel", t.cancel);
    const alerts = [...state.alerts.values()].sort(
      (a, b) =>
        (SEVERITY_RANK[a.severity] ?? 3) - (SEVERITY_RANK[b.severity] ?? 3) ||
        Date.parse(b.fired_at) - Date.parse(a.fired_at),
    );
    setText("alerts-count", alerts.length ? String(alerts.length) : "");
    $("alerts-panel").classList.toggle("has-critical", alerts.some((a) => a.severity === "critical"));
    $("alerts-empty").hidden = alerts.length > 0;
    $("alert-list").replaceChildren(...alerts.map(alertRow));
  }

  function showAlertsMessage(text, kind) {
    const box = $("alerts-msg");
    box.textContent = text || "";
    box.className = `alerts-msg${kind ? ` alerts-msg-${kind}` : ""}`;
    box.hidden = !text;
  }

  let afterToken = null; // what to do once a token is saved

  /** Show the token input with `message`; `then` runs after a token is saved. */
  function askToken(message, then) {
    afterToken = then;
    showAlertsMessage(message, "error");
    $("token-form").hidden = false;
    $("token-input").focus();
  }

  $("token-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const token = $("token-input").value.trim();
    if (!token) return;
    sessionStorage.setItem(TOKEN_KEY, token);
    $("token-input").value = "";
    $("token-form").hidden = true;
    showAlertsMessage("", null);
    const then = afterToken;
    afterToken = null;
    if (then) then();
    loadDevices();
    if (!streamOpen()) connect(); // reads may have been refused without the token
  });

  $("token-cancel").addEventListener("click", () => {
    afterToken = null;
    $("token-input").value = "";
    $("token-form").hidden = true;
    showAlertsMessage("", null);
  });

  $("lang-toggle").addEventListener("click", () => {
    state.lang = state.lang === "zh" ? "en" : "zh";
    localStorage.setItem(LANG_KEY, state.lang);
    renderAlerts();
  });

  /** POST the acknowledgement with the stored token; errors are shown in the panel. */
  async function acknowledge(id, button) {
    const t = tr();
    if (!getToken()) {
      askToken(t.tokenForAck, () => acknowledge(id, null));
      return;
    }
    if (button) {
      button.disabled = true;
      button.textContent = t.acking;
    }
    try {
      const res = await fetch(`api/v1/alerts/${encodeURIComponent(id)}/ack`, {
        method: "POST",
        headers: { ...authHeaders(), "Content-Type": "application/json" },
        body: "{}",
        cache: "no-store",
      });
      if (res.status === 401) {
        sessionStorage.removeItem(TOKEN_KEY); // unknown, malformed or revoked
        askToken(t.refused(await errorDetail(res)), () => acknowledge(id, null));
        return;
      }
      if (res.status === 403) {
        askToken(t.forbidden(await errorDetail(res)), () => acknowledge(id, null));
        return;
      }
      if (res.status === 404) {
        state.alerts.delete(id);
        showAlertsMessage(t.gone, "error");
        return;
      }
      if (!res.ok) throw new Error(await errorDetail(res));
      const alert = await res.json();
      putAlert(alert);
      showAlertsMessage(t.done(alert.acked_by || ""), "ok");
    } catch (err) {
      showAlertsMessage(t.failed(err.message || String(err)), "error");
    } finally {
      renderAlerts();
    }
  }

  // --- chart: bars of kg CO2 (left axis) and a line of grid import kWh (right axis) ----

  /** The smallest "nice" step (1, 2, 2.5, 5 x 10^k) of at least `raw`. */
  function niceStep(raw) {
    if (!(raw > 0)) return 0.25;
    const mag = 10 ** Math.floor(Math.log10(raw));
    return [1, 2, 2.5, 5, 10].map((m) => m * mag).find((step) => step >= raw * (1 - 1e-9));
  }

  const esc = (s) => String(s).replace(/[&<>"]/g, (c) => `&#${c.charCodeAt(0)};`);
  const f1 = (x) => x.toFixed(1);

  /** Decimals that show every multiple of `step` exactly (0.25 -> 2, 50 -> 0). */
  function decimalsOf(step) {
    let d = 0;
    while (d < 3 && Math.abs(step * 10 ** d - Math.round(step * 10 ** d)) > 1e-6) d += 1;
    return d;
  }

  function drawChart(rows) {
    const svg = $("chart");
    const box = $("chart-box");
    const W = box.clientWidth;
    const H = box.clientHeight;
    if (W < 50 || H < 50) return;
    svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
    const font = Math.max(13, Math.min(26, Math.round(H / 18)));
    svg.style.setProperty("--chart-font", `${font}px`);
    const pad = { left: font * 4, right: font * 4, top: font * 1.6, bottom: font * 2 };
    const pw = W - pad.left - pad.right;
    const ph = H - pad.top - pad.bottom;
    const parts = [];

    if (state.dayStart === null) {
      svg.innerHTML = `<text class="empty" x="${W / 2}" y="${H / 2}" text-anchor="middle">Waiting for data…</text>`;
      return;
    }
    const slots = Math.max(1, Math.round((state.dayEnd - state.dayStart) / HOUR_MS));
    const slotW = pw / slots;
    const xOf = (t) => pad.left + ((t - state.dayStart) / HOUR_MS) * slotW;

    const kgMax = Math.max(0, ...rows.map((r) => r.scope2_location_kg));
    const kwhMax = Math.max(0, ...rows.map((r) => r.grid_import_kwh));
    // about 4 steps on the left axis; the right axis has as many, at the same heights
    const leftStep = niceStep(kgMax / 4);
    const nTicks = Math.max(1, Math.ceil(kgMax / leftStep - 1e-9));
    const rightStep = niceStep(kwhMax / nTicks);
    const yL = (v) => pad.top + ph - (v / (leftStep * nTicks)) * ph;
    const yR = (v) => pad.top + ph - (v / (rightStep * nTicks)) * ph;
    const fmtL = numberFormat(decimalsOf(leftStep));
    const fmtR = numberFormat(decimalsOf(rightStep));
    for (let i = 0; rows.length && i <= nTicks; i++) {
      const y = pad.top + ph - (i / nTicks) * ph;
      if (i > 0) parts.push(`<line class="gridline" x1="${pad.left}" x2="${pad.left + pw}" y1="${f1(y)}" y2="${f1(y)}"/>`);
      parts.push(`<text x="${pad.left - font * 0.5}" y="${f1(y + font * 0.35)}" text-anchor="end">${fmtL.format(i * leftStep)}</text>`);
      parts.push(`<text x="${pad.left + pw + font * 0.5}" y="${f1(y + font * 0.35)}" text-anchor="start">${fmtR.format(i * rightStep)}</text>`);
    }
    if (rows.length) {
      parts.push(`<text class="axis-title" x="${pad.left - font * 0.5}" y="${f1(pad.top - font * 0.7)}" text-anchor="end">kg</text>`);
      parts.push(`<text class="axis-title" x="${pad.left + pw + font * 0.5}" y="${f1(pad.top - font * 0.7)}" text-anchor="start">kWh</text>`);
    }

    // the hour in progress
    if (state.now !== null && state.now >= state.dayStart && state.now < state.dayEnd) {
      const t = state.dayStart + Math.floor((state.now - state.dayStart) / HOUR_MS) * HOUR_MS;
      parts.push(`<rect class="now-band" x="${f1(xOf(t))}" y="${pad.top}" width="${f1(slotW)}" height="${f1(ph)}"/>`);
    }

    // bars
    const barW = Math.max(2, slotW * 0.7);
    for (const r of rows) {
      const t = Date.parse(r.hour_start);
      const y = yL(Math.max(0, r.scope2_location_kg));
      const current = state.now !== null && state.now >= t && state.now < t + HOUR_MS;
      parts.push(`<rect class="bar${current ? " current" : ""}" x="${f1(xOf(t) + (slotW - barW) / 2)}" y="${f1(y)}" width="${f1(barW)}" height="${f1(pad.top + ph - y)}" rx="3"><title>${esc(localHm(t))}: ${esc(fmtAmount(r.scope2_location_kg))} kg CO2</title></rect>`);
    }

    // grid import line (one point per hour, at the slot's centre); the hour in progress
    // is still growing, so its segment is dashed and its dot hollow
    const pts = rows.map((r) => {
      const t = Date.parse(r.hour_start);
      return {
        x: xOf(t) + slotW / 2,
        y: yR(Math.max(0, r.grid_import_kwh)),
        current: state.now !== null && state.now >= t && state.now < t + HOUR_MS,
      };
    });
    const xy = (p) => `${f1(p.x)},${f1(p.y)}`;
    const done = pts.filter((p) => !p.current);
    if (done.length > 1) parts.push(`<polyline class="line" points="${done.map(xy).join(" ")}"/>`);
    const last = pts[pts.length - 1];
    if (pts.length > 1 && last.current) {
      parts.push(`<polyline class="line partial" points="${xy(pts[pts.length - 2])} ${xy(last)}"/>`);
    }
    const dotR = Math.max(3, Math.min(7, slotW * 0.12));
    for (const p of pts) {
      parts.push(`<circle class="dot${p.current ? " current" : ""}" cx="${f1(p.x)}" cy="${f1(p.y)}" r="${f1(dotR)}"/>`);
    }

    // baseline and hour labels (local time; every 2nd or 3rd hour when narrow)
    parts.push(`<line class="baseline" x1="${pad.left}" x2="${pad.left + pw}" y1="${pad.top + ph}" y2="${pad.top + ph}"/>`);
    const every = slotW > font * 2.2 ? 1 : slotW > font * 1.2 ? 2 : 3;
    for (let i = 0; i < slots; i += every) {
      const t = state.dayStart + i * HOUR_MS;
      parts.push(`<text x="${f1(xOf(t) + slotW / 2)}" y="${f1(pad.top + ph + font * 1.4)}" text-anchor="middle">${esc(localHour(t))}</text>`);
    }
    if (!rows.length) {
      parts.push(`<text class="empty" x="${f1(pad.left + pw / 2)}" y="${f1(pad.top + ph / 2)}" text-anchor="middle">No hourly results yet today</text>`);
    }
    svg.innerHTML = parts.join("");
  }

  // --- connection --------------------------------------------------------------------

  let source = null; // EventSource, or {readyState, close} of the fetch reader
  let retryMs = RETRY_MIN_MS;
  let retryTimer = null;

  const streamOpen = () => source !== null && source.readyState === EventSource.OPEN;

  function setConnection(kind, text) {
    const conn = $("conn");
    conn.className = `conn conn-${kind}`;
    setText("conn-text", text);
    const lost = kind === "lost";
    document.body.classList.toggle("is-lost", lost);
    $("banner").hidden = !lost;
  }

  function parse(handler) {
    return (ev) => {
      let data;
      try {
        data = JSON.parse(ev.data);
      } catch (err) {
        return; // a malformed event must not stop the page
      }
      handler(data);
    };
  }

  const HANDLERS = { snapshot: onSnapshot, readings: onReadings, hourly: onHourly, alert: onAlert };

  function opened() {
    retryMs = RETRY_MIN_MS;
    setConnection("live", "Live");
  }

  function retryLater() {
    setConnection("lost", "Connection lost");
    setText("banner-text", `Connection lost — retrying in ${Math.round(retryMs / 1000)} s`);
    retryTimer = setTimeout(connect, retryMs);
    retryMs = Math.min(RETRY_MAX_MS, retryMs * 2);
  }

  /** After the stream was refused: ask for a token if reads need one. */
  async function checkReadAccess() {
    try {
      const res = await fetch("api/v1/status", { cache: "no-store", headers: authHeaders() });
      if (res.status === 401 || res.status === 403) {
        if (res.status === 401) sessionStorage.removeItem(TOKEN_KEY);
        askToken(tr().tokenForRead, null);
      }
    } catch (err) {
      // the server is away: the retry says so
    }
  }

  function connect() {
    clearTimeout(retryTimer);
    if (source) source.close();
    if (getToken()) {
      connectWithToken();
      return;
    }
    source = new EventSource("api/v1/live");
    source.addEventListener("open", opened);
    source.addEventListener("snapshot", parse(onSnapshot));
    source.addEventListener("readings", parse(onReadings));
    source.addEventListener("hourly", parse(onHourly));
    source.addEventListener("alert", parse(onAlert));
    source.addEventListener("error", () => {
      if (source.readyState === EventSource.CONNECTING) {
        // the browser retries by itself
        setConnection("lost", "Reconnecting…");
        setText("banner-text", "Connection lost — reconnecting…");
        return;
      }
      // CLOSED: the server refused the stream (503, or 401/403 when reads need a
      // token); retry with backoff
      source.close();
      checkReadAccess();
      retryLater();
    });
  }

  /** Dispatch one SSE message block (lines up to a blank line; HTML Living Standard,
   *  "Server-sent events", event stream interpretation). */
  function dispatchBlock(block) {
    let event = "message";
    const data = [];
    for (const line of block.split("\n")) {
      if (!line || line.startsWith(":")) continue;
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      let value = colon < 0 ? "" : line.slice(colon + 1);
      if (value.startsWith(" ")) value = value.slice(1);
      if (field === "event") event = value;
      else if (field === "data") data.push(value);
    }
    const handler = HANDLERS[event];
    if (handler && data.length) parse(handler)({ data: data.join("\n") });
  }

  /** The stream read with fetch, so that it can send the token's header. */
  async function connectWithToken() {
    const abort = new AbortController();
    const me = {
      readyState: EventSource.CONNECTING,
      close() {
        this.readyState = EventSource.CLOSED;
        abort.abort();
      },
    };
    source = me;
    try {
      const res = await fetch("api/v1/live", {
        headers: { ...authHeaders(), Accept: "text/event-stream" },
        cache: "no-store",
        signal: abort.signal,
      });
      if (res.status === 401 || res.status === 403) {
        if (res.status === 401) sessionStorage.removeItem(TOKEN_KEY);
        askToken(tr().tokenForRead, null);
        throw new Error(`HTTP ${res.status}`);
      }
      if (!res.ok || !res.body) throw new Error(`HTTP ${res.status}`);
      me.readyState = EventSource.OPEN;
      opened();
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer = (buffer + value).replace(/\r\n?/g, "\n");
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          dispatchBlock(buffer.slice(0, end));
          buffer = buffer.slice(end + 2);
        }
      }
      throw new Error("the stream ended");
    } catch (err) {
      if (me.readyState === EventSource.CLOSED || source !== me) return; // closed by us
      me.readyState = EventSource.CLOSED;
      retryLater();
    }
  }

  // connected, but nothing new for a while: the collectors may be down
  setInterval(() => {
    if (!streamOpen()) return;
    const idle = Date.now() - state.lastReadingWall > IDLE_WALL_MS;
    if (idle) setConnection("idle", "Live · no new data");
    else setConnection("live", "Live");
  }, 5000);

  // redraw the chart when its box changes size (window resize, banner shown or hidden)
  let resizeFrame = 0;
  new ResizeObserver(() => {
    cancelAnimationFrame(resizeFrame);
    resizeFrame = requestAnimationFrame(() => drawChart(todayRows()));
  }).observe($("chart-box"));

  state.lang = pickLang();
  renderAlerts();
  connect(); // the first snapshot loads the devices

})();
