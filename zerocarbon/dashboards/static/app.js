// zerocarbon live page. No libraries, no network beyond this app: factory LANs have no
// internet. Texts: static/i18n.json ({"zh-CN": {...}, "en": {...}}, one catalogue for
// the whole page); the language is ?lang=, else the one the user last chose (toggle,
// localStorage), else the site's (GET api/v1/status site_language). Data: GET
// api/v1/status, api/v1/devices, api/v1/lines and the event stream api/v1/live
// (snapshot, readings, hourly, alert); per-line energy per unit from
// api/v1/lines/hourly and api/v1/lines/{line}/baseline; device links from
// api/v1/devices/{id}/health. "Now" is the data's newest reading, not the wall clock.
// Alerts are acknowledged with POST api/v1/alerts/{id}/ack and a bearer token
// (operator role), asked for once and kept in sessionStorage; when reads need a token
// (ZEROCARBON_API_READ_ROLE), every request sends it, and the stream is read with fetch
// (EventSource cannot send headers).
"use strict";

(() => {
  const HOUR_MS = 3600e3;
  const STALE_MS = 5 * 60e3; // a device value older than this (data time) is stale
  const IDLE_WALL_MS = 60e3; // connected but no new reading for this long: "no new data"
  const HEALTH_WALL_MS = 15e3; // device links are asked for this often
  const RETRY_MIN_MS = 2000;
  const RETRY_MAX_MS = 30000;
  const FLOW_EPS_KW = 0.05; // below this a flow is drawn idle
  const TOKEN_KEY = "zerocarbon.token"; // sessionStorage: forgotten when the tab closes
  const LANGS = ["zh-CN", "en"];
  const DEFAULT_LANG = "zh-CN"; // the site file's default ([site] language)
  const SEVERITY_RANK = { critical: 0, warning: 1, info: 2 };

  const state = {
    siteName: "",
    siteLanguage: null, // from api/v1/status
    timezone: "UTC",
    now: null, // ms, newest reading ts
    dayStart: null, // ms, UTC bounds of the site's day of "now"
    dayEnd: null,
    latest: {}, // device -> metric -> {value, ts (ms)}
    hourly: new Map(), // hour_start ms -> row
    devices: [], // from api/v1/devices
    lines: [], // from api/v1/lines: {id, devices, name, product, unit}
    lineToday: new Map(), // line -> {energy_kwh, units}
    baselines: new Map(), // line -> {expected} | {missing: true} | {error}
    offline: null, // device ids whose link is down (null: not known)
    lastReadingWall: 0,
    alerts: new Map(), // alert id -> alert (firing), from the snapshot and alert events
    catalogue: null, // i18n.json
    lang: DEFAULT_LANG,
  };

  // --- language (static/common.js) ---------------------------------------------------

  const { normLang } = zc;
  /** ?lang=, else the one the user chose, else the site's. */
  const pickLang = () => zc.pickLang(state.siteLanguage || DEFAULT_LANG);
  /** The catalogue's text of `key` in the page's language, `{name}`s filled from `params`. */
  const t = zc.translator(state);

  function setLang(lang) {
    state.lang = lang;
    formats.clear();
    zc.translatePage(t, lang);
    $("chart").setAttribute("aria-label", t("chart.aria"));
    render();
    renderAlerts();
  }

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

  /** GET a JSON read of the API with the stored token; 401/403 ask for one. */
  async function getJson(url) {
    const res = await fetch(url, { cache: "no-store", headers: authHeaders() });
    if (res.status === 401 || res.status === 403) {
      if (res.status === 401) sessionStorage.removeItem(TOKEN_KEY);
      askToken(t("alerts.tokenForRead"), null);
    }
    return res;
  }

  // --- formatting (the page's language, the site's time zone) --------------------------

  const formats = zc.formats(state);
  const numberFormat = formats.number;

  function fmtPower(kw) {
    if (kw === null || !Number.isFinite(kw)) return "—";
    return numberFormat(Math.abs(kw) >= 100 ? 0 : 1).format(kw);
  }

  function fmtAmount(x) {
    if (x === null || !Number.isFinite(x)) return "—";
    return numberFormat(Math.abs(x) >= 1000 ? 0 : 1).format(x);
  }

  const fmtPct = formats.pct;

  function timeFormat(options) {
    return formats.cached(JSON.stringify(options) + state.timezone,
      () => new Intl.DateTimeFormat(state.lang, { timeZone: state.timezone, ...options }));
  }

  /** The hour (00-23) of `ms` in the site's zone, without the language's hour sign. */
  function localHour(ms) {
    const parts = timeFormat({ hour: "2-digit", hourCycle: "h23" }).formatToParts(ms);
    return (parts.find((p) => p.type === "hour") || { value: "" }).value;
  }
  const localHm = (ms) =>
    timeFormat({ hour: "2-digit", minute: "2-digit", hourCycle: "h23" }).format(ms);
  const hourSpan = (start) => `${localHm(start)}–${localHm(start + HOUR_MS)}`;

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
    const dayChanged = state.dayStart !== Date.parse(snap.day_start);
    state.siteName = snap.site_name;
    if (state.timezone !== snap.site_timezone) formats.clear();
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
    if (dayChanged) {
      state.lineToday = new Map();
      state.baselines = new Map();
    }
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
    loadLineToday(); // the lines' rows are written with the site's
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

  // --- reads: status, devices, lines, line results, device health ----------------------

  async function loadStatus() {
    try {
      const res = await getJson("api/v1/status");
      if (!res.ok) return;
      const status = await res.json();
      state.siteLanguage = normLang(status.site_language);
      const lang = pickLang();
      if (lang !== state.lang) setLang(lang);
    } catch (err) {
      // the server is away: the stream's retry says so
    }
  }

  let devicesRetry = null;
  async function loadDevices() {
    clearTimeout(devicesRetry);
    try {
      const res = await getJson("api/v1/devices");
      if (res.status === 401 || res.status === 403) return; // saving a token reloads
      if (!res.ok) throw new Error(`HTTP ${res.status}`);
      state.devices = await res.json();
      const lines = await getJson("api/v1/lines");
      if (!lines.ok) throw new Error(`HTTP ${lines.status}`);
      state.lines = await lines.json();
      render();
      loadLineToday();
      loadHealth();
    } catch (err) {
      devicesRetry = setTimeout(loadDevices, 5000);
    }
  }

  const isoOf = (ms) => new Date(ms).toISOString();

  let lineLoading = false;
  let lineAgain = false;
  /** Today's energy and output per line (sums of api/v1/lines/hourly over the site's
   *  day), then each line's baseline when the newest closed hour moved. */
  async function loadLineToday() {
    if (state.dayStart === null || !state.lines.length) return;
    if (lineLoading) {
      lineAgain = true;
      return;
    }
    lineLoading = true;
    try {
      const span = `start=${encodeURIComponent(isoOf(state.dayStart))}&end=${encodeURIComponent(isoOf(state.dayEnd))}`;
      const res = await getJson(`api/v1/lines/hourly?${span}`);
      if (res.ok) {
        const today = new Map();
        for (const row of await res.json()) {
          const sum = today.get(row.line) || { energy_kwh: 0, units: 0 };
          sum.energy_kwh += row.energy_kwh;
          sum.units += row.production_units;
          today.set(row.line, sum);
        }
        state.lineToday = today;
        renderLines();
      }
      await loadBaselines(span);
    } catch (err) {
      // next hourly event tries again
    } finally {
      lineLoading = false;
      if (lineAgain) {
        lineAgain = false;
        loadLineToday();
      }
    }
  }

  let baselineHour = null; // the closed hour the baselines were read after
  async function loadBaselines(span) {
    const closed = state.now === null ? null : Math.floor(state.now / HOUR_MS) * HOUR_MS;
    if (closed === baselineHour && state.baselines.size) return;
    baselineHour = closed;
    for (const line of state.lines) {
      const res = await getJson(`api/v1/lines/${encodeURIComponent(line.id)}/baseline?${span}`);
      if (res.status === 409) {
        state.baselines.set(line.id, { missing: true });
      } else if (res.ok) {
        const body = await res.json();
        state.baselines.set(line.id, {
          expected: body.enpi ? body.enpi.expected_kwh_per_unit : body.model.kwh_per_unit,
        });
      } else {
        state.baselines.set(line.id, { error: await errorDetail(res) });
      }
    }
    renderLines();
  }

  /** Which devices' links are down (api/v1/devices/{id}/health); without a gateway
   *  (503) the devices whose newest value is stale by the data's clock. */
  async function loadHealth() {
    if (!state.devices.length) return;
    const offline = [];
    try {
      for (const d of state.devices) {
        const res = await getJson(`api/v1/devices/${encodeURIComponent(d.id)}/health`);
        if (res.status === 503) {
          state.offline = null;
          renderQuality();
          return;
        }
        if (!res.ok) continue;
        if (!(await res.json()).online) offline.push(d.id);
      }
      state.offline = offline;
    } catch (err) {
      state.offline = null;
    }
    renderQuality();
  }

  /** Sum of a metric over `devices`: {value, ts (oldest), count}. */
  function sumOf(devices, metric) {
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

  const byRole = (role, metric) => sumOf(state.devices.filter((d) => d.role === role), metric);

  /** A line's power now: the latest active power of its load devices (sub-meters). */
  function linePower(line) {
    const ids = new Set(line.devices);
    return sumOf(state.devices.filter((d) => ids.has(d.id) && d.role === "load"), "active_power_kw");
  }

  // --- rendering ---------------------------------------------------------------------

  const $ = (id) => document.getElementById(id);

  function setText(id, text) {
    const el = typeof id === "string" ? $(id) : id;
    if (el.textContent !== text) el.textContent = text;
    if (el.classList.contains("value") || el.classList.contains("total-value")) {
      el.classList.toggle("no-value", text === "—");
    }
  }

  /** The value shown, with its raw number and data time for checks (data-kw, data-ts). */
  function setValue(id, text, raw, ts) {
    const el = $(id);
    setText(el, text);
    el.dataset.raw = raw === null || raw === undefined ? "" : String(raw);
    el.dataset.ts = Number.isFinite(ts) ? isoOf(ts) : "";
  }

  function isStale(agg) {
    return agg.value !== null && state.now !== null && state.now - agg.ts > STALE_MS;
  }

  function markStale(tileId, agg, detailId, detail) {
    const stale = isStale(agg);
    $(tileId).classList.toggle("stale", stale);
    setText(detailId, stale ? t("stale.since", { time: localHm(agg.ts) }) : detail);
  }

  function todayRows() {
    if (state.dayStart === null) return [];
    return [...state.hourly.entries()]
      .filter(([ts]) => ts >= state.dayStart && ts < state.dayEnd)
      .sort((a, b) => a[0] - b[0])
      .map(([, row]) => row);
  }

  function render() {
    if (!state.catalogue) return;
    document.title = t("page.title", { site: state.siteName || "zerocarbon" });
    setText("site-name", state.siteName || "zerocarbon");
    if (state.now !== null) {
      setText("data-time", timeFormat({
        hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23",
      }).format(state.now));
      setText("data-date", `${timeFormat({
        weekday: "short", day: "numeric", month: "short", year: "numeric",
      }).format(state.now)} · ${state.timezone}`);
    }
    const flows = renderTiles();
    const rows = todayRows();
    renderIntensity(rows);
    renderTotals(rows);
    renderLines();
    renderQuality();
    drawChart(rows);
    drawFlow(flows);
  }

  /** The power tiles of the flow view; returns each flow's signed kW for the arrows. */
  function renderTiles() {
    const grid = byRole("grid", "active_power_kw");
    const pv = byRole("pv", "active_power_kw");
    const battery = byRole("battery", "active_power_kw");
    const soc = byRole("battery", "state_of_charge_pct");

    setValue("grid-value", fmtPower(grid.value === null ? null : Math.abs(grid.value)), grid.value, grid.ts);
    let gridDetail = "\u00a0";
    if (grid.value !== null) {
      gridDetail = t(grid.value > FLOW_EPS_KW ? "grid.importing"
        : grid.value < -FLOW_EPS_KW ? "grid.exporting" : "grid.balanced");
    }
    markStale("tile-grid", grid, "grid-detail", gridDetail);

    setValue("pv-value", fmtPower(pv.value), pv.value, pv.ts);
    const rated = state.devices
      .filter((d) => d.role === "pv" && d.rated_power_kw)
      .reduce((sum, d) => sum + d.rated_power_kw, 0);
    let pvDetail = pv.devices || !state.devices.length ? "\u00a0" : t("pv.none");
    if (pv.value !== null && rated > 0) {
      pvDetail = t("pv.ofRated", {
        pct: Math.round((100 * Math.max(pv.value, 0)) / rated), rated: fmtPower(rated),
      });
    }
    markStale("tile-pv", pv, "pv-detail", pvDetail);
    $("tile-pv").classList.toggle("absent", state.devices.length > 0 && !pv.devices);

    setValue("battery-value", fmtPower(battery.value === null ? null : Math.abs(battery.value)), battery.value, battery.ts);
    let batteryDetail = battery.devices || !state.devices.length ? "\u00a0" : t("battery.none");
    if (battery.value !== null) {
      batteryDetail = t(battery.value > FLOW_EPS_KW ? "battery.discharging"
        : battery.value < -FLOW_EPS_KW ? "battery.charging" : "battery.idle");
    }
    markStale("tile-battery", battery, "battery-detail", batteryDetail);
    $("tile-battery").classList.toggle("absent", state.devices.length > 0 && !battery.devices);
    const socPct = soc.value === null ? null : soc.value / soc.count;
    const fill = $("soc-fill");
    fill.style.width = `${socPct === null ? 0 : Math.min(100, Math.max(0, socPct))}%`;
    fill.classList.toggle("low", socPct !== null && socPct < 20);
    setText("soc-text", socPct === null ? t("battery.socNone") : t("battery.soc", { pct: Math.round(socPct) }));

    // Site load = grid + PV + battery (signs: grid + import, battery + discharge).
    // A role the site does not have counts as 0; one without a value yet leaves it unknown.
    const parts = [grid, pv, battery];
    const known = grid.value !== null && parts.every((p) => p.devices === 0 || p.value !== null);
    const load = known ? parts.reduce((sum, p) => sum + (p.value || 0), 0) : null;
    const loadTs = Math.min(...parts.filter((p) => p.value !== null).map((p) => p.ts));
    setValue("load-value", fmtPower(load), load, loadTs);
    markStale("tile-load", { value: load, ts: loadTs }, "load-detail", t("load.detail"));

    const lineKw = renderLineNodes(load);
    return { grid: grid.value, pv: pv.value, battery: battery.value, lines: lineKw };
  }

  /** The production lines of the flow view (and "other loads": site load minus the
   *  lines, when every line has a value); returns line id -> kW. */
  function renderLineNodes(load) {
    const box = $("flow-lines");
    const ids = state.lines.map((l) => l.id);
    const names = new Map(state.lines.map((l) => [l.id, l.name || l.id]));
    if (box.dataset.lines !== ids.join("\n")) {
      box.dataset.lines = ids.join("\n");
      box.replaceChildren(...[...ids, ""].map((id) => {
        const node = element("div", `node node-line${id ? "" : " node-other"}`);
        node.dataset.flow = id ? `line:${id}` : "other";
        node.dataset.line = id;
        const reading = element("div", "reading");
        reading.append(element("span", "value no-value", "—"), element("span", "unit", "kW"));
        node.append(element("h3", "", id ? names.get(id) : ""), reading);
        return node;
      }));
    }
    const kw = {};
    let linesSum = 0;
    let allKnown = ids.length > 0;
    for (const line of state.lines) {
      const power = linePower(line);
      const node = box.querySelector(`[data-flow="line:${CSS.escape(line.id)}"]`);
      const value = node.querySelector(".value");
      setText(value, fmtPower(power.value));
      value.dataset.raw = power.value === null ? "" : String(power.value);
      node.classList.toggle("stale", isStale(power));
      kw[line.id] = power.value;
      if (power.value === null) allKnown = false;
      else linesSum += power.value;
    }
    const other = box.querySelector(".node-other");
    const otherKw = allKnown && load !== null ? load - linesSum : null;
    setText(other.querySelector("h3"), t("node.other"));
    setText(other.querySelector(".value"), fmtPower(otherKw));
    other.hidden = otherKw === null || otherKw < FLOW_EPS_KW;
    kw[""] = otherKw;
    return kw;
  }

  function renderIntensity(rows) {
    const tile = $("tile-intensity");
    const row = rows.length ? rows[rows.length - 1] : null;
    const value = row ? row.intensity_kg_per_kwh : null;
    setText("intensity-value", value === null || value === undefined
      ? "—" : numberFormat(3).format(value));
    tile.classList.remove("intensity-low", "intensity-mid", "intensity-high");
    if (!row) {
      setText("intensity-detail", t("intensity.none"));
      return;
    }
    const start = Date.parse(row.hour_start);
    const current = state.now !== null && state.now >= start && state.now < start + HOUR_MS;
    setText("intensity-detail", t(current ? "intensity.thisHour" : "intensity.hour", { span: hourSpan(start) }));
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

  // --- per-line energy per unit against the baseline --------------------------------------

  /** Today's kWh per unit of each line (Σ energy_kwh / Σ production_units, the API's
   *  roll-up rule) against its baseline's expected kWh per unit (ISO 50006 EnPI). */
  function renderLines() {
    const list = $("line-list");
    $("lines-empty").hidden = state.lines.length > 0 || !state.devices.length;
    list.replaceChildren(...state.lines.map((line) => {
      const today = state.lineToday.get(line.id);
      const base = state.baselines.get(line.id);
      const li = element("li", "line-row");
      li.dataset.line = line.id;
      const head = element("div", "line-head");
      head.append(element("span", "line-name", line.name || line.id));
      const perUnit = today && today.units > 0 ? today.energy_kwh / today.units : null;
      const reading = element("div", "line-reading");
      const value = element("span", `line-value${perUnit === null ? " no-value" : ""}`,
        perUnit === null ? "—" : numberFormat(perUnit >= 100 ? 0 : 2).format(perUnit));
      value.dataset.raw = perUnit === null ? "" : String(perUnit);
      reading.append(value, element("span", "unit", t("lines.unit")));
      head.append(reading);
      li.append(head);
      let note = "";
      let kind = "";
      if (today && !(today.units > 0)) {
        note = `${t("lines.noOutput")} · ${t("lines.energyToday", { kwh: fmtAmount(today.energy_kwh) })}`;
      } else if (base && base.missing) {
        note = t("lines.noBaseline");
        kind = "missing";
      } else if (base && base.error) {
        note = t("lines.baselineError", { detail: base.error });
        kind = "missing";
      } else if (base && Number.isFinite(base.expected)) {
        note = t("lines.expected", { value: numberFormat(base.expected >= 100 ? 0 : 2).format(base.expected) });
        if (perUnit !== null && base.expected > 0) {
          const ratio = perUnit / base.expected;
          note += ` · ${t("lines.ratio", { pct: Math.round(100 * ratio) })}`;
          kind = ratio <= 1.02 ? "ok" : ratio <= 1.1 ? "warn" : "bad";
        }
      }
      const foot = element("div", `line-baseline${kind ? ` line-${kind}` : ""}`, note || "\u00a0");
      li.append(foot);
      return li;
    }));
  }

  // --- data quality ----------------------------------------------------------------------

  /** The energy an hour's estimated_share is a share of: its metered flows, as the
   *  API's roll-ups weigh it (zerocarbon/api/rollup.py). */
  const meteredKwh = (r) =>
    r.grid_import_kwh + r.grid_export_kwh + r.pv_kwh + r.wind_kwh +
    r.battery_charge_kwh + r.battery_discharge_kwh + r.submetered_kwh;

  function renderQuality() {
    if (!state.catalogue) return;
    const rows = todayRows();
    const now = state.now;
    const current = rows.find((r) => {
      const start = Date.parse(r.hour_start);
      return now !== null && now >= start && now < start + HOUR_MS;
    });
    setValue("q-hour-estimated", fmtPct(current ? current.estimated_share : null, 1),
      current ? current.estimated_share : null, NaN);
    let weight = 0;
    let estimated = 0;
    for (const r of rows) {
      const w = meteredKwh(r);
      weight += w;
      estimated += w * r.estimated_share;
    }
    const dayShare = weight > 0 ? estimated / weight : null;
    setValue("q-day-estimated", fmtPct(dayShare, 1), dayShare, NaN);
    $("q-day-estimated").classList.toggle("q-bad", dayShare !== null && dayShare > 0.05);
    $("q-hour-estimated").classList.toggle("q-bad", current && current.estimated_share > 0.05);

    // the newest closed hour: an hour in progress has not been covered by anyone yet
    const closed = [...rows].reverse().find((r) => now !== null && Date.parse(r.hour_start) + HOUR_MS <= now);
    if (closed) {
      setText("q-missing-label", t("quality.missing", { span: hourSpan(Date.parse(closed.hour_start)) }));
      setValue("q-missing", String(closed.missing_devices), closed.missing_devices, Date.parse(closed.hour_start));
    } else {
      setText("q-missing-label", t("quality.missingNone"));
      setValue("q-missing", t("quality.noClosedHour"), null, NaN);
    }
    $("q-missing").classList.toggle("q-bad", Boolean(closed && closed.missing_devices > 0));
    $("q-missing").classList.toggle("q-none", !closed);

    let offline = state.offline;
    if (offline === null && state.devices.length && now !== null) {
      offline = state.devices
        .filter((d) => {
          const metrics = Object.values(state.latest[d.id] || {});
          return !metrics.length || now - Math.max(...metrics.map((m) => m.ts)) > STALE_MS;
        })
        .map((d) => d.id);
    }
    const box = $("q-offline");
    box.dataset.devices = offline === null ? "" : offline.join(" ");
    if (offline === null) {
      setText(box, t("quality.unknown"));
    } else if (!offline.length) {
      setText(box, t("quality.allOnline"));
    } else {
      const names = offline.map((id) => element("span", "q-device", id));
      box.replaceChildren(...names);
    }
    box.classList.toggle("q-bad", Boolean(offline && offline.length));
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
    const severity = SEVERITY_RANK[alert.severity] === undefined ? "info" : alert.severity;
    const li = element("li", `alert sev-${severity}${alert.acked ? " acked" : ""}`);
    li.dataset.id = String(alert.id);
    const head = element("div", "alert-head");
    head.append(
      element("span", "alert-sev", t(`alerts.severity.${severity}`)),
      element("span", "alert-rule", alert.rule),
      element("span", "alert-subject", alert.subject),
    );
    const messages = alert.messages || {};
    const mine = state.lang === "zh-CN" ? "zh" : "en";
    const text = messages[mine] || messages[mine === "zh" ? "en" : "zh"] || "";
    const foot = element("div", "alert-foot");
    foot.append(element("span", "alert-since", t("alerts.since", { time: alertTime(Date.parse(alert.since)) })));
    if (alert.acked) {
      foot.append(element("span", "alert-acked", t("alerts.ackedBy", { who: alert.acked_by || "?" })));
    } else {
      const button = element("button", "ack-btn", t("alerts.ack"));
      button.type = "button";
      button.addEventListener("click", () => acknowledge(alert.id, button));
      foot.append(button);
    }
    li.append(head, element("div", "alert-msg", text), foot);
    return li;
  }

  function renderAlerts() {
    if (!state.catalogue) return;
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

  let alertsMessage = null; // {key, params, kind}: re-told when the language changes

  function showAlertsMessage(key, params, kind) {
    alertsMessage = key ? { key, params, kind } : null;
    tellAlertsMessage();
  }

  function tellAlertsMessage() {
    const box = $("alerts-msg");
    const m = alertsMessage;
    box.textContent = m ? t(m.key, m.params) : "";
    box.className = `alerts-msg${m && m.kind ? ` alerts-msg-${m.kind}` : ""}`;
    box.hidden = !m;
  }

  let afterToken = null; // what to do once a token is saved

  /** Show the token input with the message `key`; `then` runs after a token is saved. */
  function askToken(key, then, params) {
    afterToken = then;
    showAlertsMessage(key, params, "error");
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
    showAlertsMessage(null);
    const then = afterToken;
    afterToken = null;
    if (then) then();
    loadStatus();
    loadDevices();
    if (!streamOpen()) connect(); // reads may have been refused without the token
  });

  $("token-cancel").addEventListener("click", () => {
    afterToken = null;
    $("token-input").value = "";
    $("token-form").hidden = true;
    showAlertsMessage(null);
  });

  $("lang-toggle").addEventListener("click", () => {
    const lang = zc.otherLang(state.lang);
    zc.keepLang(lang);
    setLang(lang);
    tellAlertsMessage();
  });

  /** POST the acknowledgement with the stored token; errors are shown in the panel. */
  async function acknowledge(id, button) {
    if (!getToken()) {
      askToken("alerts.tokenForAck", () => acknowledge(id, null));
      return;
    }
    if (button) {
      button.disabled = true;
      button.textContent = t("alerts.acking");
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
        askToken("alerts.refused", () => acknowledge(id, null), { detail: await errorDetail(res) });
        return;
      }
      if (res.status === 403) {
        askToken("alerts.forbidden", () => acknowledge(id, null), { detail: await errorDetail(res) });
        return;
      }
      if (res.status === 404) {
        state.alerts.delete(id);
        showAlertsMessage("alerts.gone", null, "error");
        return;
      }
      if (!res.ok) throw new Error(await errorDetail(res));
      const alert = await res.json();
      putAlert(alert);
      showAlertsMessage("alerts.done", { who: alert.acked_by || "" }, "ok");
    } catch (err) {
      showAlertsMessage("alerts.failed", { detail: err.message || String(err) }, "error");
    } finally {
      renderAlerts();
    }
  }

  // --- energy-flow arrows ----------------------------------------------------------------

  /** An arrow from box `a` to box `b` (DOMRects relative to the flow), from edge to edge
   *  along the line between their centres; `dir` 1 a->b, -1 b->a, 0 idle. */
  function arrow(a, b, dir, cls) {
    const ca = { x: a.left + a.width / 2, y: a.top + a.height / 2 };
    const cb = { x: b.left + b.width / 2, y: b.top + b.height / 2 };
    const dx = cb.x - ca.x;
    const dy = cb.y - ca.y;
    // the distance from a centre to its box's edge along (dx, dy), as a share of |d|
    const exit = (r) => Math.min(
      dx ? r.width / 2 / Math.abs(dx) : Infinity, dy ? r.height / 2 / Math.abs(dy) : Infinity,
    );
    const gap = 10 / Math.hypot(dx, dy);
    const s = exit(a) + gap;
    const e = 1 - exit(b) - gap;
    if (e <= s) return "";
    let p = { x: ca.x + dx * s, y: ca.y + dy * s };
    let q = { x: ca.x + dx * e, y: ca.y + dy * e };
    if (dir < 0) [p, q] = [q, p];
    const path = `M${f1(p.x)},${f1(p.y)} L${f1(q.x)},${f1(q.y)}`;
    if (!dir) return `<path class="flow-line idle ${cls}" d="${path}"/>`;
    const ux = (q.x - p.x) / Math.hypot(q.x - p.x, q.y - p.y);
    const uy = (q.y - p.y) / Math.hypot(q.x - p.x, q.y - p.y);
    const head = 26;
    const w = 14;
    const bx = q.x - ux * head;
    const by = q.y - uy * head;
    const tip = `${f1(q.x)},${f1(q.y)} ${f1(bx - uy * w)},${f1(by + ux * w)} ${f1(bx + uy * w)},${f1(by - ux * w)}`;
    const body = `M${f1(p.x)},${f1(p.y)} L${f1(bx)},${f1(by)}`;
    return `<path class="flow-line ${cls}" d="${body}"/><polygon class="flow-head ${cls}" points="${tip}"/>`;
  }

  let lastFlows = null;
  function drawFlow(flows) {
    if (flows) lastFlows = flows;
    const f = lastFlows;
    const box = $("flow");
    const svg = $("flow-arrows");
    if (!f || box.clientWidth < 50) return;
    const origin = box.getBoundingClientRect();
    const rect = (el) => {
      const r = el.getBoundingClientRect();
      return { left: r.left - origin.left, top: r.top - origin.top, width: r.width, height: r.height };
    };
    const sign = (v) => (v === null || Math.abs(v) < FLOW_EPS_KW ? 0 : Math.sign(v));
    const load = rect($("tile-load"));
    const parts = [];
    for (const [id, cls, value] of [
      ["tile-grid", "grid", f.grid], ["tile-pv", "pv", f.pv], ["tile-battery", "battery", f.battery],
    ]) {
      const el = $(id);
      if (el.classList.contains("absent")) continue;
      parts.push(arrow(rect(el), load, sign(value), cls));
    }
    for (const node of $("flow-lines").children) {
      if (node.hidden) continue;
      const value = f.lines[node.dataset.line];
      parts.push(arrow(load, rect(node), value === undefined ? 0 : Math.max(0, sign(value)), "line"));
    }
    svg.setAttribute("viewBox", `0 0 ${box.clientWidth} ${box.clientHeight}`);
    svg.innerHTML = parts.join("");
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
    const font = Math.max(18, Math.min(28, Math.round(H / 14)));
    svg.style.setProperty("--chart-font", `${font}px`);
    const pad = { left: font * 3.2, right: font * 3.2, top: font * 1.6, bottom: font * 2 };
    const pw = W - pad.left - pad.right;
    const ph = H - pad.top - pad.bottom;
    const parts = [];

    if (state.dayStart === null) {
      svg.innerHTML = `<text class="empty" x="${W / 2}" y="${H / 2}" text-anchor="middle">${esc(t("chart.waiting"))}</text>`;
      return;
    }
    const slots = Math.max(1, Math.round((state.dayEnd - state.dayStart) / HOUR_MS));
    const slotW = pw / slots;
    const xOf = (ms) => pad.left + ((ms - state.dayStart) / HOUR_MS) * slotW;

    const kgMax = Math.max(0, ...rows.map((r) => r.scope2_location_kg));
    const kwhMax = Math.max(0, ...rows.map((r) => r.grid_import_kwh));
    // about 3 steps on the left axis; the right axis has as many, at the same heights
    const leftStep = niceStep(kgMax / 3);
    const nTicks = Math.max(1, Math.ceil(kgMax / leftStep - 1e-9));
    const rightStep = niceStep(kwhMax / nTicks);
    const yL = (v) => pad.top + ph - (v / (leftStep * nTicks)) * ph;
    const yR = (v) => pad.top + ph - (v / (rightStep * nTicks)) * ph;
    const fmtL = numberFormat(decimalsOf(leftStep));
    const fmtR = numberFormat(decimalsOf(rightStep));
    for (let i = 0; rows.length && i <= nTicks; i++) {
      const y = pad.top + ph - (i / nTicks) * ph;
      if (i > 0) parts.push(`<line class="gridline" x1="${pad.left}" x2="${pad.left + pw}" y1="${f1(y)}" y2="${f1(y)}"/>`);
      parts.push(`<text x="${pad.left - font * 0.4}" y="${f1(y + font * 0.35)}" text-anchor="end">${fmtL.format(i * leftStep)}</text>`);
      parts.push(`<text x="${pad.left + pw + font * 0.4}" y="${f1(y + font * 0.35)}" text-anchor="start">${fmtR.format(i * rightStep)}</text>`);
    }
    if (rows.length) {
      parts.push(`<text class="axis-title" x="${pad.left - font * 0.4}" y="${f1(pad.top - font * 0.6)}" text-anchor="end">kg</text>`);
      parts.push(`<text class="axis-title" x="${pad.left + pw + font * 0.4}" y="${f1(pad.top - font * 0.6)}" text-anchor="start">kWh</text>`);
    }

    // the hour in progress
    if (state.now !== null && state.now >= state.dayStart && state.now < state.dayEnd) {
      const ms = state.dayStart + Math.floor((state.now - state.dayStart) / HOUR_MS) * HOUR_MS;
      parts.push(`<rect class="now-band" x="${f1(xOf(ms))}" y="${pad.top}" width="${f1(slotW)}" height="${f1(ph)}"/>`);
    }

    // bars
    const barW = Math.max(2, slotW * 0.7);
    for (const r of rows) {
      const ms = Date.parse(r.hour_start);
      const y = yL(Math.max(0, r.scope2_location_kg));
      const current = state.now !== null && state.now >= ms && state.now < ms + HOUR_MS;
      const title = t("chart.barTitle", { time: localHm(ms), kg: fmtAmount(r.scope2_location_kg) });
      parts.push(`<rect class="bar${current ? " current" : ""}" x="${f1(xOf(ms) + (slotW - barW) / 2)}" y="${f1(y)}" width="${f1(barW)}" height="${f1(pad.top + ph - y)}" rx="3"><title>${esc(title)}</title></rect>`);
    }

    // grid import line (one point per hour, at the slot's centre); the hour in progress
    // is still growing, so its segment is dashed and its dot hollow
    const pts = rows.map((r) => {
      const ms = Date.parse(r.hour_start);
      return {
        x: xOf(ms) + slotW / 2,
        y: yR(Math.max(0, r.grid_import_kwh)),
        current: state.now !== null && state.now >= ms && state.now < ms + HOUR_MS,
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

    // baseline and hour labels (local time; every 2nd, 3rd or 4th hour when narrow)
    parts.push(`<line class="baseline" x1="${pad.left}" x2="${pad.left + pw}" y1="${pad.top + ph}" y2="${pad.top + ph}"/>`);
    const every = [1, 2, 3, 4, 6].find((n) => slotW * n > font * 1.8) || 6;
    for (let i = 0; i < slots; i += every) {
      const ms = state.dayStart + i * HOUR_MS;
      parts.push(`<text x="${f1(xOf(ms) + slotW / 2)}" y="${f1(pad.top + ph + font * 1.4)}" text-anchor="middle">${esc(localHour(ms))}</text>`);
    }
    if (!rows.length) {
      parts.push(`<text class="empty" x="${f1(pad.left + pw / 2)}" y="${f1(pad.top + ph / 2)}" text-anchor="middle">${esc(t("chart.empty"))}</text>`);
    }
    svg.innerHTML = parts.join("");
  }

  // --- connection --------------------------------------------------------------------

  let source = null; // EventSource, or {readyState, close} of the fetch reader
  let retryMs = RETRY_MIN_MS;
  let retryTimer = null;
  let connKey = "conn.connecting";

  const streamOpen = () => source !== null && source.readyState === EventSource.OPEN;

  function setConnection(kind, key) {
    connKey = key;
    const conn = $("conn");
    conn.className = `conn conn-${kind}`;
    conn.querySelector("[data-i18n]").dataset.i18n = key;
    setText("conn-text", t(key));
    const lost = kind === "lost";
    document.body.classList.toggle("is-lost", lost);
    $("banner").hidden = !lost;
  }

  function setBanner(key, params) {
    const el = $("banner-text");
    el.dataset.i18n = key;
    el.dataset.i18nParams = params ? JSON.stringify(params) : "";
    setText(el, t(key, params));
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
    setConnection("live", "conn.live");
  }

  function retryLater() {
    setConnection("lost", "conn.lost");
    setBanner("banner.retry", { s: Math.round(retryMs / 1000) });
    retryTimer = setTimeout(connect, retryMs);
    retryMs = Math.min(RETRY_MAX_MS, retryMs * 2);
  }

  /** After the stream was refused: ask for a token if reads need one. */
  async function checkReadAccess() {
    try {
      await getJson("api/v1/status");
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
        setConnection("lost", "conn.reconnecting");
        setBanner("banner.reconnecting");
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
        askToken("alerts.tokenForRead", null);
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
    const key = idle ? "conn.idle" : "conn.live";
    if (key !== connKey) setConnection(idle ? "idle" : "live", key);
  }, 5000);

  setInterval(loadHealth, HEALTH_WALL_MS);

  // redraw the chart and the arrows when their boxes change size
  let resizeFrame = 0;
  const resized = new ResizeObserver(() => {
    cancelAnimationFrame(resizeFrame);
    resizeFrame = requestAnimationFrame(() => {
      drawChart(todayRows());
      drawFlow(null);
    });
  });
  resized.observe($("chart-box"));
  resized.observe($("flow"));

  (async () => {
    state.catalogue = await zc.loadCatalogue();
    setLang(pickLang());
    await loadStatus(); // the site's language, unless the user chose one
    connect(); // the first snapshot loads the devices and lines
  })();
})();
