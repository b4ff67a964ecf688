// zerocarbon group page (the center's /): every site with its uplink state, the group's
// hourly carbon of the last 24 hours, the sites ranked and the group scorecard of the
// last complete month. No libraries, no network beyond this app. Texts: static/i18n.json
// (keys "grp.*", plus the live page's "lang.*", "chart.*"); the language is ?lang=,
// else the one the user last chose (localStorage, shared with the site pages), else
// zh-CN. Data: GET api/v1/group/sites, api/v1/group/hourly, api/v1/group/ranking?by=,
// api/v1/group/scorecard?period= (?period= on the page, else the month before this one
// in the browser's time zone). States and "seen ago" are the center's (its clock), not
// the browser's. Reads send a token kept in sessionStorage; a 401 or 403 asks for one.
"use strict";

(() => {
  const HOUR_MS = 3600e3;
  const REFRESH_MS = 30e3; // the sites, hours and ranking are read again this often
  const TOKEN_KEY = zc.TOKEN_KEY; // sessionStorage, as the site pages
  const DEFAULT_LANG = "zh-CN";

  const state = {
    catalogue: null,
    lang: DEFAULT_LANG,
    sites: null, // answer of api/v1/group/sites
    hourly: null, // answer of api/v1/group/hourly
    ranking: null, // answer of api/v1/group/ranking
    scorecard: null, // answer of api/v1/group/scorecard
    errors: {}, // section -> {status, detail}
    by: "intensity",
    period: null,
  };

  const $ = (id) => document.getElementById(id);

  // --- language (static/common.js; the choice is shared with the site pages) ---------

  /** ?lang=, else the one the user chose, else zh-CN. */
  const pickLang = () => zc.pickLang(DEFAULT_LANG);
  /** The catalogue's text of `key` in the page's language, `{name}`s filled from `params`. */
  const t = zc.translator(state);

  function setLang(lang) {
    state.lang = lang;
    formats.clear();
    document.title = t("grp.title");
    zc.translatePage(t, lang);
    $("chart").setAttribute("aria-label", t("grp.hourly.aria"));
    renderAll();
  }

  // --- reads --------------------------------------------------------------------------

  const getJson = (url) => zc.getJson(url, askToken);

  function askToken(status) {
    if (status === 401) sessionStorage.removeItem(TOKEN_KEY);
    $("token-form").hidden = false;
  }

  /** Read one section's route into state[key]; a failure is kept in state.errors. */
  async function read(key, url) {
    const answer = await getJson(url);
    if (answer.body !== null) {
      state[key] = answer.body;
      delete state.errors[key];
    } else {
      state.errors[key] = { status: answer.status, detail: answer.detail };
    }
  }

  // --- formatting (the page's language, the browser's time zone) -----------------------

  const formats = zc.formats(state);
  const numberFormat = formats.number;
  const fmt = formats.fmt;

  /** Energy and masses: whole units from 1,000, else one decimal. */
  const fmtAmount = (x) => fmt(x, Math.abs(Number(x)) >= 1000 ? 0 : 1);

  const fmtPct = formats.pct;

  function fmtTime(iso) {
    if (!iso) return "—";
    const dt = formats.cached("dt", () => new Intl.DateTimeFormat("en-CA", {
      year: "numeric", month: "2-digit", day: "2-digit",
      hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23",
    }));
    const p = {};
    for (const part of dt.formatToParts(new Date(iso))) p[part.type] = part.value;
    return `${p.year}-${p.month}-${p.day} ${p.hour}:${p.minute}:${p.second}`;
  }

  /** A duration [s] as "45 s", "12 min", "3 h", "2 d". */
  function fmtAgo(s) {
    if (s === null || s === undefined || !Number.isFinite(s)) return "—";
    const abs = Math.max(0, s);
    if (abs < 90) return t("grp.ago.s", { n: fmt(abs, 0) });
    if (abs < 90 * 60) return t("grp.ago.min", { n: fmt(abs / 60, 0) });
    if (abs < 36 * 3600) return t("grp.ago.h", { n: fmt(abs / 3600, 0) });
    return t("grp.ago.d", { n: fmt(abs / 86400, 0) });
  }

  function fmtBytes(n) {
    if (n === null || n === undefined) return "—";
    if (n < 1024) return `${fmt(n, 0)} B`;
    if (n < 1024 ** 2) return `${fmt(n / 1024, 1)} KiB`;
    return `${fmt(n / 1024 ** 2, 1)} MiB`;
  }

  function element(tag, className, text) {
    const el = document.createElement(tag);
    if (className) el.className = className;
    if (text !== undefined && text !== null) el.textContent = text;
    return el;
  }

  function cell(text, field, numeric) {
    const td = element("td", numeric ? "num" : null, text);
    if (field) td.dataset.field = field;
    return td;
  }

  /** The site's name linking to its own page, or plain text when it has none. */
  function siteName(site) {
    const label = site.name || site.site;
    if (!site.page_url) return element("span", "grp-site-name", label);
    const a = element("a", "grp-site-name", label);
    a.href = site.page_url;
    return a;
  }

  function sectionState(id, key, emptyKey, empty) {
    const box = $(id);
    const error = state.errors[key];
    box.replaceChildren();
    box.removeAttribute("data-status");
    if (error && state[key] === null) {
      box.dataset.status = String(error.status);
      box.textContent = error.status === 0
        ? t("grp.unreachable")
        : t("grp.failed", { status: error.status, detail: error.detail || "" });
      return false;
    }
    if (state[key] === null) {
      box.textContent = t("grp.loading");
      return false;
    }
    if (empty) {
      box.textContent = t(emptyKey);
      return false;
    }
    return true;
  }

  // --- rendering ----------------------------------------------------------------------

  function renderAll() {
    renderAsOf();
    renderSites();
    renderHourly();
    renderRanking();
    renderScorecard();
  }

  function renderAsOf() {
    const now = state.sites && state.sites.now;
    $("grp-asof").textContent = now ? t("grp.asOf", { time: fmtTime(now) }) : "";
  }

  function rankingBySite() {
    const out = new Map();
    for (const s of (state.ranking && state.ranking.sites) || []) out.set(s.site, s);
    return out;
  }

  function renderSites() {
    const sites = state.sites ? state.sites.sites : [];
    const ok = sectionState("sites-state", "sites", "grp.sites.none", state.sites && !sites.length);
    $("sites-table").hidden = !ok;
    const counts = { online: 0, stale: 0, never: 0 };
    for (const s of sites) counts[s.state] += 1;
    $("sites-count").textContent = state.sites
      ? t("grp.sites.count", { online: counts.online, stale: counts.stale, never: counts.never })
      : "";
    if (!ok) return;
    const totals = rankingBySite();
    const rows = sites.map((s) => {
      const tr = element("tr", `grp-site state-${s.state}`);
      tr.dataset.site = s.site;
      tr.dataset.state = s.state;
      const badge = element("span", `grp-state grp-state-${s.state}`, t(`grp.state.${s.state}`));
      const stateCell = element("td");
      stateCell.dataset.field = "state";
      stateCell.append(badge);
      const nameCell = element("td");
      nameCell.dataset.field = "name";
      nameCell.append(siteName(s));
      const seen = s.last_seen
        ? `${fmtTime(s.last_seen)} (${t("grp.ago", { ago: fmtAgo(s.seen_ago_s) })})`
        : t("grp.sites.neverSeen");
      const b = s.backlog || {};
      const backlog = b.messages === null && b.outbox_readings === null
        ? "—"
        : t("grp.sites.backlogValue", {
          messages: fmt(b.messages, 0), bytes: fmtBytes(b.bytes), outbox: fmt(b.outbox_readings, 0),
        });
      const total = totals.get(s.site);
      const alerts = cell(fmt(s.firing_alerts, 0), "alerts", true);
      if (s.firing_alerts > 0) alerts.classList.add("grp-firing");
      tr.append(
        stateCell,
        nameCell,
        cell(seen, "last_seen"),
        cell(s.uplink_lag_s === null ? "—" : `${fmt(s.uplink_lag_s, 1)} s`, "lag", true),
        cell(backlog, "backlog", true),
        alerts,
        cell(total ? fmtPct(total.cfe_share, 1) : "—", "cfe_share", true),
        cell(total ? fmt(total.intensity_kg_per_kwh, 3) : "—", "intensity", true),
      );
      return tr;
    });
    $("sites-body").replaceChildren(...rows);
  }

  function renderTotals(dl, items) {
    dl.replaceChildren();
    for (const [key, text, field] of items) {
      const div = element("div", "acc-total");
      div.append(element("dt", null, t(key)));
      const dd = element("dd", null, text);
      dd.dataset.field = field;
      div.append(dd);
      dl.append(div);
    }
  }

  function renderHourly() {
    const h = state.hourly;
    if (!h) {
      $("hourly-totals").replaceChildren();
      drawChart([]);
      return;
    }
    const s = h.total;
    renderTotals($("hourly-totals"), [
      ["grp.hourly.load", `${fmtAmount(s.load_kwh)} kWh`, "load_kwh"],
      ["grp.hourly.renewable", `${fmtAmount(s.renewable_kwh)} kWh`, "renewable_kwh"],
      ["grp.hourly.location", `${fmtAmount(s.scope2_location_kg)} kg`, "scope2_location_kg"],
      ["grp.hourly.market", `${fmtAmount(s.scope2_market_kg)} kg`, "scope2_market_kg"],
      ["grp.sites.cfe", fmtPct(s.cfe_share, 1), "cfe_share"],
      ["grp.sites.intensity", fmt(s.intensity_kg_per_kwh, 3), "intensity"],
    ]);
    drawChart(h.hours);
  }

  function rankValue(s) {
    if (state.by === "cfe_share") return fmtPct(s.cfe_share, 1);
    if (state.by === "emissions") return `${fmtAmount(s.emissions_kg)} kg`;
    return fmt(s.intensity_kg_per_kwh, 3);
  }

  function renderRanking() {
    const r = state.ranking;
    const ok = sectionState("ranking-state", "ranking", "grp.sites.none", r && !r.sites.length);
    $("ranking-table").hidden = !ok;
    if (!ok) return;
    const rows = r.sites.map((s) => {
      const tr = element("tr", s.rank === null ? "grp-unranked" : null);
      tr.dataset.site = s.site;
      const nameCell = element("td");
      nameCell.dataset.field = "name";
      nameCell.append(siteName(s));
      tr.append(
        cell(s.rank === null ? "—" : String(s.rank), "rank", true),
        nameCell,
        cell(`${fmtAmount(s.load_kwh)} kWh`, "load_kwh", true),
        cell(fmtPct(s.cfe_share, 1), "cfe_share", true),
        cell(fmt(s.intensity_kg_per_kwh, 3), "intensity", true),
        cell(fmt(s.market_intensity_kg_per_kwh, 3), "market_intensity", true),
        cell(`${fmtAmount(s.emissions_kg)} kg`, "emissions_kg", true),
        cell(fmt(s.kg_per_unit, 3), "kg_per_unit", true),
      );
      tr.title = t("grp.ranking.value", { value: rankValue(s) });
      return tr;
    });
    $("ranking-body").replaceChildren(...rows);
  }

  function scorecardRow(label, f, extra) {
    const tr = element("tr");
    const first = element(extra ? "td" : "th");
    first.append(label);
    tr.append(
      first,
      cell(`${fmtAmount(f.load_kwh)} kWh`, "load_kwh", true),
      cell(`${fmtAmount(f.green_kwh)} kWh`, "green_kwh", true),
      cell(fmtPct(f.cfe_share, 1), "cfe_share", true),
      cell(fmt(f.scope1_kg / 1000, 3), "scope1_t", true),
      cell(fmt(f.scope2_location_kg / 1000, 3), "scope2_location_t", true),
      cell(fmt(f.scope2_market_kg / 1000, 3), "scope2_market_t", true),
      cell(fmt(f.total_location_kg / 1000, 3), "total_location_t", true),
      cell(extra || ""),
    );
    return tr;
  }

  function renderScorecard() {
    $("scorecard-period").textContent = state.period ? `${state.period} · t CO₂` : "";
    const sc = state.scorecard;
    const ok = sectionState("scorecard-state", "scorecard", "grp.scorecard.none", sc && !sc.sites.length);
    $("scorecard-table").hidden = !ok;
    const notes = [];
    if (sc && sc.missing.length) {
      notes.push(t("grp.scorecard.missing", { sites: sc.missing.map((m) => m.name || m.site).join(", ") }));
    }
    if (sc && sc.unreadable.length) {
      notes.push(t("grp.scorecard.unreadable", { sites: sc.unreadable.map((u) => u.site).join(", ") }));
    }
    $("scorecard-missing").replaceChildren(...notes.map((n) => element("p", null, n)));
    if (!ok) return;
    const rows = sc.sites.map((s) => {
      const tr = scorecardRow(siteName(s), s.figures,
        t("grp.scorecard.issuedValue", { time: fmtTime(s.issued_at), by: s.issued_by, id: s.report_id }));
      tr.dataset.site = s.site;
      return tr;
    });
    $("scorecard-body").replaceChildren(...rows);
    $("scorecard-foot").replaceChildren(scorecardRow(t("grp.scorecard.group"), sc.totals, null));
  }

  // --- chart: bars of kg CO2 (left axis), a line of grid import kWh (right axis) -------
  // (the live page's chart, over the 24 hours the API answered instead of a site's day)

  function niceStep(raw) {
    if (!(raw > 0)) return 0.25;
    const mag = 10 ** Math.floor(Math.log10(raw));
    return [1, 2, 2.5, 5, 10].map((m) => m * mag).find((step) => step >= raw * (1 - 1e-9));
  }

  const esc = (s) => String(s).replace(/[&<>"]/g, (c) => `&#${c.charCodeAt(0)};`);
  const f1 = (x) => x.toFixed(1);

  function decimalsOf(step) {
    let d = 0;
    while (d < 3 && Math.abs(step * 10 ** d - Math.round(step * 10 ** d)) > 1e-6) d += 1;
    return d;
  }

  function localHour(ms) {
    return formats.cached("hour",
      () => new Intl.DateTimeFormat("en-CA", { hour: "2-digit", hourCycle: "h23" })).format(ms);
  }

  function drawChart(rows) {
    const svg = $("chart");
    const box = $("chart-box");
    const W = box.clientWidth;
    const H = box.clientHeight;
    if (W < 50 || H < 50) return;
    svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
    const font = Math.max(12, Math.min(18, Math.round(H / 16)));
    svg.style.setProperty("--chart-font", `${font}px`);
    if (!state.hourly) {
      svg.innerHTML = `<text class="empty" x="${W / 2}" y="${H / 2}" text-anchor="middle">${esc(t("grp.loading"))}</text>`;
      return;
    }
    const pad = { left: font * 4, right: font * 4, top: font * 1.6, bottom: font * 2 };
    const pw = W - pad.left - pad.right;
    const ph = H - pad.top - pad.bottom;
    const start = Date.parse(state.hourly.start);
    const end = Date.parse(state.hourly.end);
    const slots = Math.max(1, Math.round((end - start) / HOUR_MS));
    const slotW = pw / slots;
    const xOf = (ms) => pad.left + ((ms - start) / HOUR_MS) * slotW;
    const parts = [];

    const kgMax = Math.max(0, ...rows.map((r) => r.scope2_location_kg));
    const kwhMax = Math.max(0, ...rows.map((r) => r.grid_import_kwh));
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
    const barW = Math.max(2, slotW * 0.7);
    for (const r of rows) {
      const ms = Date.parse(r.hour_start);
      const y = yL(Math.max(0, r.scope2_location_kg));
      const title = t("grp.hourly.barTitle", {
        time: fmtTime(r.hour_start), kg: fmtAmount(r.scope2_location_kg), sites: r.sites,
      });
      parts.push(`<rect class="bar" x="${f1(xOf(ms) + (slotW - barW) / 2)}" y="${f1(y)}" width="${f1(barW)}" height="${f1(pad.top + ph - y)}" rx="3"><title>${esc(title)}</title></rect>`);
    }
    const pts = rows.map((r) => ({
      x: xOf(Date.parse(r.hour_start)) + slotW / 2,
      y: yR(Math.max(0, r.grid_import_kwh)),
    }));
    if (pts.length > 1) {
      parts.push(`<polyline class="line" points="${pts.map((p) => `${f1(p.x)},${f1(p.y)}`).join(" ")}"/>`);
    }
    const dotR = Math.max(2, Math.min(5, slotW * 0.12));
    for (const p of pts) parts.push(`<circle class="dot" cx="${f1(p.x)}" cy="${f1(p.y)}" r="${f1(dotR)}"/>`);
    parts.push(`<line class="baseline" x1="${pad.left}" x2="${pad.left + pw}" y1="${pad.top + ph}" y2="${pad.top + ph}"/>`);
    const every = [1, 2, 3, 4, 6].find((n) => slotW * n > font * 1.8) || 6;
    for (let i = 0; i < slots; i += every) {
      const ms = start + i * HOUR_MS;
      parts.push(`<text x="${f1(xOf(ms) + slotW / 2)}" y="${f1(pad.top + ph + font * 1.4)}" text-anchor="middle">${esc(localHour(ms))}</text>`);
    }
    if (!rows.length) {
      parts.push(`<text class="empty" x="${f1(pad.left + pw / 2)}" y="${f1(pad.top + ph / 2)}" text-anchor="middle">${esc(t("grp.hourly.empty"))}</text>`);
    }
    svg.innerHTML = parts.join("");
  }

  // --- the period and the loop ----------------------------------------------------------

  /** ?period=, else the month before this one (browser time). */
  function pickPeriod() {
    const asked = new URLSearchParams(location.search).get("period");
    if (asked) return asked;
    const now = new Date();
    const y = now.getMonth() === 0 ? now.getFullYear() - 1 : now.getFullYear();
    const m = now.getMonth() === 0 ? 12 : now.getMonth();
    return `${y}-${String(m).padStart(2, "0")}`;
  }

  async function refresh() {
    await Promise.all([
      read("sites", "api/v1/group/sites"),
      read("hourly", "api/v1/group/hourly"),
      read("ranking", `api/v1/group/ranking?by=${encodeURIComponent(state.by)}`),
    ]);
    renderAll();
  }

  async function loadScorecard() {
    await read("scorecard", `api/v1/group/scorecard?period=${encodeURIComponent(state.period)}`);
    renderScorecard();
  }

  $("lang-toggle").addEventListener("click", () => {
    const next = zc.otherLang(state.lang);
    zc.keepLang(next);
    const url = new URL(location.href);
    if (url.searchParams.has("lang")) {
      url.searchParams.set("lang", next);
      history.replaceState(null, "", url);
    }
    setLang(next);
  });

  $("ranking-by").addEventListener("change", async (ev) => {
    state.by = ev.target.value;
    await read("ranking", `api/v1/group/ranking?by=${encodeURIComponent(state.by)}`);
    renderRanking();
  });

  $("token-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const token = $("token-input").value.trim();
    if (!token) return;
    sessionStorage.setItem(TOKEN_KEY, token);
    $("token-input").value = "";
    $("token-form").hidden = true;
    await Promise.all([refresh(), loadScorecard()]);
  });

  let resizeFrame = 0;
  new ResizeObserver(() => {
    cancelAnimationFrame(resizeFrame);
    resizeFrame = requestAnimationFrame(() => drawChart(state.hourly ? state.hourly.hours : []));
  }).observe($("chart-box"));

  (async () => {
    state.catalogue = await zc.loadCatalogue();
    state.period = pickPeriod();
    setLang(pickLang());
    await Promise.all([refresh(), loadScorecard()]);
    document.body.dataset.loaded = "1";
    setInterval(refresh, REFRESH_MS);
  })();
})();
