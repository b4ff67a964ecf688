// zerocarbon accounts page (/accounts): the figures a zero-carbon factory is judged by,
// for a month, quarter or year, at a desk or on paper. No libraries, no network beyond
// this app. Texts: static/i18n.json (the live page's catalogue, keys "acc.*" and
// "nav.*"); the language is ?lang=, else the one the user last chose (shared with the
// live page, localStorage), else the site's (GET api/v1/status site_language). The
// period is ?period= (2026-06, 2026-Q2, 2026), else the last complete month in the
// site's time zone. Data: GET api/v1/scorecard?period= and api/v1/scorecard/trend,
// api/v1/accounts?period= and api/v1/accounts/reports?period=, api/v1/footprints?period=,
// api/v1/cost/monthly?month= (a month only: the bill is monthly), api/v1/ledger. A
// section whose route answers 404, 409 or 503 says why instead of its figures. Reads
// send the live page's token (sessionStorage) when one is kept.
"use strict";

(() => {
  const DEFAULT_LANG = "zh-CN";
  const TREND_MONTHS = 12; // the scorecard's trend: the period's last 12 months

  const state = {
    catalogue: null,
    lang: DEFAULT_LANG,
    siteLanguage: null,
    siteName: "",
    timezone: "UTC",
    period: null, // {kind: "month"|"quarter"|"year", year, part (month 1-12 | quarter 1-4)}
    data: {}, // section -> {status, body, detail} of the last answer
  };

  const $ = (id) => document.getElementById(id);

  // --- language (static/common.js; the choice is shared with the live page) -----------

  const { normLang } = zc;
  /** ?lang=, else the one the user chose, else the site's. */
  const pickLang = () => zc.pickLang(state.siteLanguage || DEFAULT_LANG);

  function has(key) {
    const book = state.catalogue || {};
    return key in (book[state.lang] || {}) || key in (book.en || {});
  }

  /** The catalogue's text of `key` in the page's language, `{name}`s filled from `params`. */
  const t = zc.translator(state);

  function setLang(lang) {
    state.lang = lang;
    formats.clear();
    zc.translatePage(t, lang);
    $("period-year").setAttribute("aria-label", t("acc.year"));
    $("period-part").setAttribute("aria-label", t("acc.part"));
    fillParts();
    renderAll();
  }

  // --- reads --------------------------------------------------------------------------

  const getJson = (url) => zc.getJson(url);

  // --- formatting (the page's language, the site's time zone) --------------------------

  const formats = zc.formats(state);
  const numberFormat = formats.number;

  /** A number (or a decimal string, as the API sends money and volumes) to `digits`. */
  const fmt = (x, digits) => (x === "" ? "—" : formats.fmt(x, digits));

  function fmtPct(share, digits) {
    if (share === null || share === undefined || !Number.isFinite(Number(share))) return "—";
    return `${numberFormat(digits).format(100 * Number(share))} %`;
  }

  /** A time as "2026-06-10 14:15" in the site's zone (both languages: unambiguous). */
  function fmtTime(iso) {
    if (!iso) return "—";
    const dt = formats.cached("dt", () => new Intl.DateTimeFormat("en-CA", {
      timeZone: state.timezone, year: "numeric", month: "2-digit", day: "2-digit",
      hour: "2-digit", minute: "2-digit", hourCycle: "h23",
    }));
    const parts = {};
    for (const p of dt.formatToParts(new Date(iso))) parts[p.type] = p.value;
    return `${parts.year}-${parts.month}-${parts.day} ${parts.hour}:${parts.minute}`;
  }

  /** A unit price: at least 4 decimals, up to 6 (tariffs have 0.029875 CNY/kWh). */
  function fmtPrice(x) {
    const n = Number(x);
    if (x === null || x === undefined || !Number.isFinite(n)) return "—";
    return formats.cached("price", () => new Intl.NumberFormat(state.lang, {
      minimumFractionDigits: 4, maximumFractionDigits: 6,
    })).format(n);
  }

  /** The month's name in the page's language (Intl: "June" in English). */
  function monthName(month, withYear) {
    const options = withYear ? { year: "numeric", month: "long" } : { month: "long" };
    return formats.cached(`month${withYear ? "y" : ""}`,
      () => new Intl.DateTimeFormat(state.lang, { timeZone: "UTC", ...options }))
      .format(new Date(Date.UTC(withYear || 2000, month - 1, 15)));
  }

  /** Activity data to 2 decimals under 1,000 and whole units above. */
  function fmtActivity(x) {
    return fmt(x, Math.abs(Number(x)) >= 1000 ? 0 : 2);
  }

  // --- the period ---------------------------------------------------------------------

  /** The site's year and month (1-12) now. */
  function siteToday() {
    const parts = new Intl.DateTimeFormat("en-CA", {
      timeZone: state.timezone, year: "numeric", month: "numeric",
    }).formatToParts(new Date());
    const get = (type) => Number(parts.find((p) => p.type === type).value);
    return { year: get("year"), month: get("month") };
  }

  function lastCompleteMonth() {
    const { year, month } = siteToday();
    return month === 1
      ? { kind: "month", year: year - 1, part: 12 }
      : { kind: "month", year, part: month - 1 };
  }

  function parsePeriod(text) {
    const v = String(text || "").trim().toUpperCase();
    let m = /^(\d{4})-(\d{2})$/.exec(v);
    if (m && Number(m[2]) >= 1 && Number(m[2]) <= 12) {
      return { kind: "month", year: Number(m[1]), part: Number(m[2]) };
    }
    m = /^(\d{4})-Q([1-4])$/.exec(v);
    if (m) return { kind: "quarter", year: Number(m[1]), part: Number(m[2]) };
    m = /^(\d{4})$/.exec(v);
    if (m) return { kind: "year", year: Number(m[1]), part: null };
    return null;
  }

  const pad2 = (n) => String(n).padStart(2, "0");

  function periodLabel(p) {
    if (p.kind === "month") return `${p.year}-${pad2(p.part)}`;
    if (p.kind === "quarter") return `${p.year}-Q${p.part}`;
    return `${p.year}`;
  }

  /** The period's last month, as {year, month}. */
  function lastMonthOf(p) {
    if (p.kind === "month") return { year: p.year, month: p.part };
    if (p.kind === "quarter") return { year: p.year, month: p.part * 3 };
    return { year: p.year, month: 12 };
  }

  function monthLabel(year, month) {
    return `${year}-${pad2(month)}`;
  }

  function addMonths(year, month, n) {
    const i = year * 12 + (month - 1) + n;
    return { year: Math.floor(i / 12), month: (i % 12) + 1 };
  }

  function periodTitle(p) {
    if (p.kind === "month") return t("acc.periodMonth", { name: monthName(p.part, p.year), label: periodLabel(p) });
    if (p.kind === "quarter") return t("acc.periodQuarter", { year: p.year, q: p.part });
    return t("acc.periodYear", { year: p.year });
  }

  function fillParts() {
    const sel = $("period-part");
    const kind = $("period-kind").value;
    const keep = sel.value;
    sel.replaceChildren();
    sel.hidden = kind === "year";
    const count = kind === "month" ? 12 : 4;
    for (let i = 1; i <= count; i += 1) {
      const o = document.createElement("option");
      o.value = String(i);
      o.textContent = kind === "month" ? monthName(i, 0) : `Q${i}`;
      sel.append(o);
    }
    if (keep && Number(keep) <= count) sel.value = keep;
  }

  function showPeriodInForm(p) {
    $("period-kind").value = p.kind;
    fillParts();
    $("period-year").value = String(p.year);
    if (p.part) $("period-part").value = String(p.part);
  }

  function periodFromForm() {
    const kind = $("period-kind").value;
    const year = Number($("period-year").value);
    if (!Number.isInteger(year) || year < 2000 || year > 2100) return null;
    const part = kind === "year" ? null : Number($("period-part").value);
    return { kind, year, part };
  }

  // --- loading ------------------------------------------------------------------------

  let loadSeq = 0;

  async function loadPeriod(p) {
    state.period = p;
    const label = periodLabel(p);
    const q = encodeURIComponent(label);
    const seq = ++loadSeq;
    const last = lastMonthOf(p);
    const first = addMonths(last.year, last.month, -(TREND_MONTHS - 1));
    const trendQ = `start=${monthLabel(first.year, first.month)}&end=${monthLabel(last.year, last.month)}`;
    state.data = {};
    renderAll();
    const reads = {
      scorecard: getJson(`api/v1/scorecard?period=${q}`),
      trend: getJson(`api/v1/scorecard/trend?${trendQ}`),
      account: getJson(`api/v1/accounts?period=${q}`),
      reports: getJson(`api/v1/accounts/reports?period=${q}`),
      footprints: getJson(`api/v1/footprints?period=${q}`),
      cost: p.kind === "month" ? getJson(`api/v1/cost/monthly?month=${q}`) : null,
      ledger: getJson("api/v1/ledger"),
    };
    for (const [name, promise] of Object.entries(reads)) {
      if (promise === null) {
        state.data[name] = { status: -1, body: null, detail: "" };
        continue;
      }
      promise.then((answer) => {
        if (seq !== loadSeq) return;
        state.data[name] = answer;
        renderAll();
      });
    }
    await Promise.all(Object.values(reads).filter(Boolean));
    if (seq === loadSeq) document.body.dataset.loaded = label;
  }

  async function loadStatus() {
    const answer = await getJson("api/v1/status");
    if (answer.body) {
      state.siteName = answer.body.site_name || "";
      state.timezone = answer.body.site_timezone || "UTC";
      state.siteLanguage = normLang(answer.body.site_language);
    }
  }

  // --- rendering helpers --------------------------------------------------------------

  function element(tag, className, text) {
    const el = document.createElement(tag);
    if (className) el.className = className;
    if (text !== undefined && text !== null) el.textContent = text;
    return el;
  }

  function cell(text, className) {
    return element("td", className, text);
  }

  function numCell(text, field) {
    const td = element("td", "num", text);
    if (field) td.dataset.field = field;
    return td;
  }

  /** Tell a section's state: loading, unavailable (with the API's reason) or nothing. */
  function sectionState(id, answer, emptyKey) {
    const box = $(id);
    box.className = "sec-state";
    box.replaceChildren();
    if (!answer) {
      box.textContent = t("acc.loading");
      return false;
    }
    if (answer.status === 200 && answer.body !== null) {
      if (emptyKey) {
        box.textContent = t(emptyKey);
        box.classList.add("sec-empty");
        return true;
      }
      return true;
    }
    box.classList.add("sec-unavailable");
    let key = "acc.unavailable.other";
    if (answer.status === 404) key = "acc.unavailable.404";
    else if (answer.status === 409) key = "acc.unavailable.409";
    else if (answer.status === 503) key = "acc.unavailable.503";
    else if (answer.status === 422) key = "acc.unavailable.422";
    else if (answer.status === 401 || answer.status === 403) key = "acc.unavailable.auth";
    else if (answer.status === 0) key = "acc.unavailable.network";
    box.dataset.status = String(answer.status);
    box.append(element("div", "sec-why", t(key, { status: answer.status })));
    if (answer.detail) box.append(element("div", "sec-detail", answer.detail));
    return false;
  }

  function clearState(id) {
    const box = $(id);
    box.className = "sec-state";
    box.replaceChildren();
    delete box.dataset.status;
  }


  // --- 1. the scorecard ---------------------------------------------------------------
  // GET api/v1/scorecard: {period, all_met, flags, indicators: [{id, name, value, unit,
  // threshold, comparison (">=", "<=" or "-"), source, met, detail, flags}], ...};
  // /trend: {start, end, months: [the same, one per month]}. Unit "-" is a share [0..1].

  function indicatorName(ind) {
    const [base, product] = ind.id.split(":");
    if (has(`acc.ind.${base}`)) return t(`acc.ind.${base}`, { product: product || "" });
    return ind.name;
  }

  const isShare = (ind) => ind.unit === "-";

  function fmtIndicator(ind, value) {
    if (value === null || value === undefined) return "—";
    if (isShare(ind)) return fmtPct(value, 1);
    return `${fmt(value, 3)} ${ind.unit}`;
  }

  /** indicator id -> [{label, value}] by month, from the trend answer. */
  function trendSeries(body) {
    const series = new Map();
    for (const month of (body && body.months) || []) {
      for (const ind of month.indicators || []) {
        if (!series.has(ind.id)) series.set(ind.id, []);
        series.get(ind.id).push({ label: month.period, value: ind.value });
      }
    }
    return series;
  }

  function esc(text) {
    return String(text).replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]);
  }

  /** A small monthly trend (inline SVG, parsed from markup: no library): a line of the
   * values, the threshold dashed, met months dotted green, missed red. */
  function sparkline(points, threshold, metOf) {
    const W = 180;
    const H = 44;
    const P = 5;
    const holder = element("span", "spark-holder");
    const values = points.map((p) => p.value).filter((v) => v !== null && Number.isFinite(v));
    if (!values.length) {
      holder.textContent = "—";
      return holder;
    }
    const th = threshold !== null && Number.isFinite(threshold) ? threshold : null;
    const all = th !== null ? values.concat([th]) : values;
    let lo = Math.min(...all);
    let hi = Math.max(...all);
    if (hi - lo < 1e-12) { lo -= 1; hi += 1; }
    const x = (i) => P + (points.length > 1 ? (i * (W - 2 * P)) / (points.length - 1) : (W - 2 * P) / 2);
    const y = (v) => H - P - ((v - lo) * (H - 2 * P)) / (hi - lo);
    const parts = [];
    if (th !== null) {
      parts.push(`<line class="spark-threshold" x1="${P}" x2="${W - P}" y1="${y(th).toFixed(1)}" y2="${y(th).toFixed(1)}"/>`);
    }
    let d = "";
    points.forEach((p, i) => {
      if (p.value === null || !Number.isFinite(p.value)) return;
      d += `${d ? "L" : "M"}${x(i).toFixed(1)},${y(p.value).toFixed(1)}`;
    });
    parts.push(`<path class="spark-line" d="${d}"/>`);
    points.forEach((p, i) => {
      if (p.value === null || !Number.isFinite(p.value)) return;
      const met = metOf(p.value);
      const cls = met === null ? "spark-dot" : met ? "spark-dot spark-met" : "spark-dot spark-missed";
      parts.push(`<circle class="${cls}" cx="${x(i).toFixed(1)}" cy="${y(p.value).toFixed(1)}" r="2.6"><title>${esc(p.label)}</title></circle>`);
    });
    const aria = esc(t("acc.scorecard.trendAria", { n: points.length }));
    holder.innerHTML = `<svg class="spark" viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" role="img" aria-label="${aria}">${parts.join("")}</svg>`;
    return holder;
  }

  function renderScorecard() {
    const answer = state.data.scorecard;
    const table = $("scorecard-table");
    const body = $("scorecard-body");
    body.replaceChildren();
    table.hidden = true;
    const indicators = answer && answer.body ? answer.body.indicators || [] : [];
    if (!sectionState("scorecard-state", answer, indicators.length ? null : "acc.scorecard.none")) return;
    if (!indicators.length) return;
    clearState("scorecard-state");
    const trend = state.data.trend && state.data.trend.body ? trendSeries(state.data.trend.body) : new Map();
    for (const ind of indicators) {
      const tr = element("tr");
      tr.dataset.indicator = ind.id;
      const name = cell(indicatorName(ind));
      for (const flag of ind.flags || []) name.append(element("div", "cell-note warn-text", flag));
      tr.append(name);
      tr.append(numCell(fmtIndicator(ind, ind.value), "value"));
      const sign = ind.comparison === "<=" ? "≤ " : ind.comparison === ">=" ? "≥ " : "";
      const threshold = ind.threshold === null || ind.threshold === undefined
        ? "—" : `${sign}${fmtIndicator(ind, ind.threshold)}`;
      tr.append(numCell(threshold, "threshold"));
      const mark = element("td", "mark");
      mark.dataset.met = String(ind.met);
      mark.append(element(
        "span",
        ind.met === true ? "badge badge-met" : ind.met === false ? "badge badge-missed" : "badge badge-unknown",
        ind.met === true ? `✓ ${t("acc.met")}` : ind.met === false ? `✗ ${t("acc.notMet")}` : t("acc.metUnknown"),
      ));
      tr.append(mark);
      const spark = element("td", "spark-cell");
      const points = trend.get(ind.id) || [];
      const th = ind.threshold === null || ind.threshold === undefined ? null : Number(ind.threshold);
      const metOf = (v) => {
        if (th === null) return null;
        if (ind.comparison === "<=") return v <= th;
        if (ind.comparison === ">=") return v >= th;
        return null;
      };
      spark.append(sparkline(points, th, metOf));
      tr.append(spark);
      tr.append(cell(ind.source || "—", "doc"));
      body.append(tr);
    }
    const all = answer.body.all_met;
    const foot = element("tr", "scorecard-all");
    foot.append(element("th", null, t("acc.scorecard.all")));
    const allCell = element("td", "mark");
    allCell.colSpan = 5;
    allCell.append(element(
      "span",
      all === true ? "badge badge-met" : all === false ? "badge badge-missed" : "badge badge-unknown",
      all === true ? `✓ ${t("acc.met")}` : all === false ? `✗ ${t("acc.notMet")}` : t("acc.metUnknown"),
    ));
    foot.append(allCell);
    body.append(foot);
    table.hidden = false;
  }

  // --- 2. the period account ----------------------------------------------------------

  function renderTotals(dl, rows) {
    dl.replaceChildren();
    for (const [key, text, field] of rows) {
      const div = element("div", "acc-total");
      div.append(element("dt", null, t(key)));
      const dd = element("dd", null, text);
      if (field) dd.dataset.field = field;
      div.append(dd);
      dl.append(div);
    }
  }

  function qualityText(q) {
    if (!q) return "—";
    const parts = [];
    parts.push(q.basis === "declared" ? t("acc.quality.declared") : t("acc.quality.measured"));
    if (q.basis !== "declared" && q.measured_share !== null && q.measured_share !== undefined) {
      parts.push(t("acc.quality.measuredShare", { pct: fmtPct(q.measured_share, 1) }));
    }
    if (q.basis !== "declared" && q.hours_expected) {
      parts.push(t("acc.quality.hours", { n: fmt(q.hours_reported, 0), of: fmt(q.hours_expected, 0) }));
    }
    const faults = [];
    for (const k of ["gaps", "resets", "rollovers", "replacements", "rejected", "backsteps"]) {
      if (q[k]) faults.push(t(`acc.quality.${k}`, { n: q[k] }));
    }
    if (faults.length) parts.push(faults.join(", "));
    return parts.join(" · ");
  }

  function renderAccount() {
    const answer = state.data.account;
    const wrap = $("account-body");
    wrap.hidden = true;
    if (!sectionState("account-state", answer)) return;
    clearState("account-state");
    const a = answer.body;
    const tot = a.totals || {};
    renderTotals($("account-totals"), [
      ["acc.account.scope1", `${fmt(tot.scope1_t, 3)} t`, "scope1_t"],
      ["acc.account.scope2Location", `${fmt(tot.scope2_location_t, 3)} t`, "scope2_location_t"],
      ["acc.account.scope2Market", `${fmt(tot.scope2_market_t, 3)} t`, "scope2_market_t"],
      ["acc.account.totalLocation", `${fmt(tot.total_location_t, 3)} t`, "total_location_t"],
      ["acc.account.totalMarket", `${fmt(tot.total_market_t, 3)} t`, "total_market_t"],
      ["acc.account.hours", t("acc.account.hoursOf", { n: fmt(a.hours_with_results, 0), of: fmt(a.hours_expected, 0) }), "hours"],
    ]);
    const body = $("sources-body");
    body.replaceChildren();
    for (const s of a.sources || []) {
      const tr = element("tr");
      tr.dataset.source = s.id;
      const name = cell(has(`acc.cat.${s.category}`) ? t(`acc.cat.${s.category}`) : s.category);
      name.append(element("div", "cell-note", s.description));
      tr.append(name);
      tr.append(numCell(`${fmtActivity(s.activity)} ${s.activity_unit}`, "activity"));
      const f = s.factor || {};
      tr.append(numCell(`${fmt(f.value, 4)} ${f.unit || ""}`, "factor"));
      const src = cell(f.source || "—", "doc");
      src.append(element("div", "cell-note", t("acc.account.revision", { rev: f.revision || "—" })));
      if (f.provisional) src.append(element("div", "cell-note warn-text", t("acc.account.provisional")));
      tr.append(src);
      const sign = s.sign < 0 ? "−" : "";
      tr.append(numCell(`${sign}${fmt(s.emissions_t ?? s.emissions_kg / 1000, 3)}`, "emissions_t"));
      tr.append(cell(qualityText(s.quality), "quality-cell"));
      body.append(tr);
    }
    const notes = $("account-notes");
    notes.replaceChildren();
    const mf = a.market_factor;
    if (mf) {
      notes.append(element("div", null, t("acc.account.marketFactor", {
        value: fmt(mf.value, 4), unit: mf.unit, source: mf.source, rev: mf.revision,
      })));
    }
    if (a.factor_table) notes.append(element("div", null, t("acc.account.factorTable", { v: a.factor_table })));
    for (const n of a.notes || []) notes.append(element("div", "cell-note", n));
    renderReports();
    wrap.hidden = false;
  }

  function renderReports() {
    const answer = state.data.reports;
    const list = $("report-list");
    list.replaceChildren();
    const reports = answer && Array.isArray(answer.body) ? answer.body : [];
    if (!sectionState("reports-state", answer, reports.length ? null : "acc.reports.none")) return;
    if (!reports.length) return;
    clearState("reports-state");
    for (const r of reports) {
      const li = element("li", "report");
      li.dataset.report = String(r.id);
      const head = t("acc.reports.issued", { id: r.id, at: fmtTime(r.issued_at), by: r.issued_by });
      li.append(element("div", "report-head", head));
      if (r.supersedes !== null && r.supersedes !== undefined) {
        li.append(element("div", "cell-note", t("acc.reports.supersedes", { id: r.supersedes })));
      }
      const tot = (r.account && r.account.totals) || {};
      li.append(element("div", "cell-note", t("acc.reports.total", { t: fmt(tot.total_location_t, 3) })));
      const revs = Object.entries(r.factor_revisions || {})
        .map(([k, f]) => `${k}: ${f.revision}`).join(" · ");
      if (revs) li.append(element("div", "cell-note", t("acc.reports.revisions", { list: revs })));
      if (r.changes && r.changes.length) {
        const ul = element("ul", "changes");
        for (const c of r.changes) ul.append(element("li", null, c.why));
        li.append(element("div", "cell-note", t("acc.reports.changes")));
        li.append(ul);
      }
      list.append(li);
    }
  }

  // --- 3. product footprints ----------------------------------------------------------
  // GET api/v1/footprints?period=: {window, standard, products: [{product, name, line,
  // declared_unit, units, per_unit: {gate_to_gate_kg_per_unit, ..._market_...,
  // cradle_to_gate_kg_per_unit, ...}, metered_measured_share, allocation_key,
  // components: [{id, stage, description, kg_co2e, kg_co2e_market, data_source,
  // source_detail}], notes}]}. Components are for the whole output: per unit = / units.

  function dataSourceText(source) {
    const m = /^allocated by (\w+)$/.exec(source || "");
    if (m) return t("acc.ds.allocated", { key: has(`acc.key.${m[1]}`) ? t(`acc.key.${m[1]}`) : m[1] });
    return has(`acc.ds.${source}`) ? t(`acc.ds.${source}`) : String(source || "—");
  }

  function renderFootprints() {
    const answer = state.data.footprints;
    const wrap = $("footprints-body");
    wrap.replaceChildren();
    const products = answer && answer.body ? answer.body.products || [] : [];
    if (!sectionState("footprints-state", answer, products.length ? null : "acc.footprints.none")) return;
    if (!products.length) return;
    clearState("footprints-state");
    for (const p of products) {
      const card = element("div", "footprint");
      card.dataset.product = p.product;
      const unit = p.declared_unit;
      card.append(element("h3", null, t("acc.footprints.product", { name: p.name, line: p.line, unit })));
      const pu = p.per_unit || {};
      const dl = element("dl", "acc-totals");
      renderTotals(dl, [
        ["acc.footprints.gateToGate", `${fmt(pu.gate_to_gate_kg_per_unit, 3)} kg CO₂e/${unit}`, "gate_to_gate"],
        ["acc.footprints.gateToGateMarket", `${fmt(pu.gate_to_gate_market_kg_per_unit, 3)} kg CO₂e/${unit}`, "gate_to_gate_market"],
        ["acc.footprints.cradleToGate", `${fmt(pu.cradle_to_gate_kg_per_unit, 3)} kg CO₂e/${unit}`, "cradle_to_gate"],
        ["acc.footprints.cradleToGateMarket", `${fmt(pu.cradle_to_gate_market_kg_per_unit, 3)} kg CO₂e/${unit}`, "cradle_to_gate_market"],
        ["acc.footprints.units", `${fmt(p.units, 0)} ${unit}`, "units"],
        ["acc.footprints.measured", fmtPct(p.metered_measured_share, 1), "measured"],
      ]);
      card.append(dl);
      const table = element("table", "acc-table");
      const head = element("tr");
      for (const k of ["acc.footprints.component", "acc.footprints.stage", "acc.footprints.perUnit", "acc.footprints.perUnitMarket", "acc.footprints.dataSource"]) {
        head.append(element("th", k.startsWith("acc.footprints.perUnit") ? "num" : null, t(k)));
      }
      const thead = element("thead");
      thead.append(head);
      table.append(thead);
      const tb = element("tbody");
      const perUnitOf = (kg) => (p.units > 0 ? kg / p.units : null);
      for (const c of p.components || []) {
        const tr = element("tr");
        tr.dataset.component = c.id;
        const name = cell(c.description || c.id);
        tr.append(name);
        tr.append(cell(has(`acc.stage.${c.stage}`) ? t(`acc.stage.${c.stage}`) : c.stage, "nowrap"));
        tr.append(numCell(fmt(perUnitOf(c.kg_co2e), 4), "per_unit"));
        tr.append(numCell(fmt(perUnitOf(c.kg_co2e_market), 4), "per_unit_market"));
        const ds = cell(dataSourceText(c.data_source));
        if (c.source_detail) ds.append(element("div", "cell-note", c.source_detail));
        tr.append(ds);
        tb.append(tr);
      }
      table.append(tb);
      card.append(table);
      for (const n of p.notes || []) card.append(element("div", "cell-note", n));
      wrap.append(card);
    }
  }

  // --- 4. energy cost -----------------------------------------------------------------

  function renderCost() {
    const answer = state.data.cost;
    const wrap = $("cost-body");
    wrap.hidden = true;
    if (answer && answer.status === -1) {
      const box = $("cost-state");
      box.className = "sec-state sec-empty";
      box.textContent = t("acc.cost.monthOnly");
      return;
    }
    if (!sectionState("cost-state", answer)) return;
    clearState("cost-state");
    const b = answer.body;
    const cur = b.currency || "CNY";
    const md = b.max_demand;
    renderTotals($("cost-totals"), [
      ["acc.cost.total", `${fmt(b.total_cny, 2)} ${cur}`, "total_cny"],
      ["acc.cost.import", `${fmt(b.grid_import_kwh, 1)} kWh`, "grid_import_kwh"],
      ["acc.cost.maxDemand", md ? `${fmt(md.demand_kw, 1)} kW` : "—", "max_demand_kw"],
      ["acc.cost.maxDemandAt", md ? fmtTime(md.bucket) : "—", "max_demand_at"],
      ["acc.cost.pvSavings", `${fmt(b.pv_savings_cny, 2)} ${cur}`, "pv_savings_cny"],
      ["acc.cost.perUnit", b.cost_per_unit_cny === null ? "—" : `${fmt(b.cost_per_unit_cny, 4)} ${cur}`, "cost_per_unit_cny"],
    ]);
    const body = $("bill-body");
    body.replaceChildren();
    for (const line of b.lines || []) {
      const tr = element("tr");
      tr.dataset.item = line.item;
      tr.append(cell(has(`acc.bill.${line.item}`) ? t(`acc.bill.${line.item}`) : line.item));
      tr.append(numCell(`${fmt(line.quantity, 1)} ${line.unit}`, "quantity"));
      tr.append(numCell(fmtPrice(line.price), "price"));
      tr.append(numCell(fmt(line.amount_cny, 2), "amount_cny"));
      body.append(tr);
    }
    $("bill-total").textContent = fmt(b.total_cny, 2);
    const lines = $("line-cost-body");
    lines.replaceChildren();
    for (const c of b.line_costs || []) {
      const tr = element("tr");
      tr.dataset.line = c.line;
      tr.append(cell(c.line));
      tr.append(numCell(`${fmt(c.energy_kwh, 1)} kWh`, "energy_kwh"));
      tr.append(numCell(fmt(c.total_cny, 2), "total_cny"));
      tr.append(numCell(fmt(c.production_units, 0), "production_units"));
      tr.append(numCell(c.cost_per_unit_cny === null ? "—" : fmt(c.cost_per_unit_cny, 4), "cost_per_unit_cny"));
      lines.append(tr);
    }
    $("line-cost-table").hidden = !(b.line_costs || []).length;
    wrap.hidden = false;
  }

  // --- 5. the instruments ledger ------------------------------------------------------

  /** Retired against the shown period: the period itself, and for a quarter or year the
   * months and quarters inside it. */
  function retiredInPeriod(byPeriod) {
    const p = state.period;
    let sum = 0;
    let any = false;
    for (const [label, volume] of Object.entries(byPeriod || {})) {
      const q = parsePeriod(label);
      if (!q || q.year !== p.year) continue;
      let inside = false;
      if (p.kind === "year") inside = true;
      else if (p.kind === "quarter") {
        inside = (q.kind === "quarter" && q.part === p.part)
          || (q.kind === "month" && Math.ceil(q.part / 3) === p.part);
      } else inside = q.kind === "month" && q.part === p.part;
      if (inside) { sum += Number(volume); any = true; }
    }
    return any ? sum : null;
  }

  function engineText(engine) {
    if (!engine || !engine.length) return "—";
    const p = state.period;
    const months = engine.filter((m) => {
      const q = parsePeriod(m.month);
      if (!q || q.year !== p.year) return false;
      if (p.kind === "month") return q.part === p.part;
      if (p.kind === "quarter") return Math.ceil(q.part / 3) === p.part;
      return true;
    });
    if (!months.length) return t("acc.ledger.engineNone");
    return months.map((m) => t("acc.ledger.engineMonth", {
      month: m.month,
      allocated: fmt(m.allocated_kwh, 1),
      volume: fmt(m.volume_kwh, 1),
      unused: fmt(m.unused_kwh, 1),
    })).join(" · ");
  }

  function renderLedger() {
    const answer = state.data.ledger;
    const wrap = $("ledger-body");
    wrap.hidden = true;
    const instruments = answer && answer.body ? answer.body.instruments || [] : [];
    if (!sectionState("ledger-state", answer, instruments.length ? null : "acc.ledger.none")) return;
    if (!instruments.length) return;
    clearState("ledger-state");
    const body = $("ledger-body-rows");
    body.replaceChildren();
    for (const i of instruments) {
      const tr = element("tr");
      tr.dataset.instrument = i.id;
      const name = cell(i.project || i.id);
      name.append(element("div", "cell-note", `${i.id} · ${i.serial}`));
      tr.append(name);
      const kind = has(`acc.ledger.kind.${i.kind}`) ? t(`acc.ledger.kind.${i.kind}`) : i.kind;
      const kindCell = cell(kind);
      if (has(`acc.ledger.status.${i.status}`)) {
        kindCell.append(element("div", "cell-note", t(`acc.ledger.status.${i.status}`)));
      }
      tr.append(kindCell);
      tr.append(numCell(`${fmt(i.volume, 3)} ${i.unit}`, "volume"));
      tr.append(numCell(fmt(i.retired, 3), "retired"));
      tr.append(numCell(fmt(i.held, 3), "held"));
      tr.append(numCell(fmt(retiredInPeriod(i.retired_by_period), 3), "retired_period"));
      tr.append(cell(engineText(i.engine), "quality-cell"));
      body.append(tr);
    }
    const used = answer.body.offsets_used_t || {};
    const inPeriod = retiredInPeriod(used);
    renderTotals($("offsets-used"), [
      ["acc.ledger.offsetsUsed", `${fmt(inPeriod ?? 0, 3)} t CO₂e`, "offsets_used_t"],
    ]);
    wrap.hidden = false;
  }

  // --- the whole page -----------------------------------------------------------------

  function renderAll() {
    if (!state.catalogue) return;
    document.title = t("acc.pageTitle", { site: state.siteName || "zerocarbon" });
    $("site-name").textContent = state.siteName || "zerocarbon";
    if (state.period) $("period-title").textContent = periodTitle(state.period);
    renderScorecard();
    renderAccount();
    renderFootprints();
    renderCost();
    renderLedger();
  }

  function showMessage(key) {
    const box = $("acc-msg");
    box.hidden = !key;
    box.textContent = key ? t(key) : "";
  }

  $("period-kind").addEventListener("change", () => {
    fillParts();
  });

  $("period-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const p = periodFromForm();
    if (!p) {
      showMessage("acc.badPeriod");
      return;
    }
    showMessage(null);
    const params = new URLSearchParams(location.search);
    params.set("period", periodLabel(p));
    history.replaceState(null, "", `?${params}`);
    loadPeriod(p);
  });

  $("lang-toggle").addEventListener("click", () => {
    const lang = zc.otherLang(state.lang);
    zc.keepLang(lang);
    setLang(lang);
  });

  async function start() {
    state.catalogue = await zc.loadCatalogue();
    await loadStatus();
    setLang(pickLang());
    const asked = new URLSearchParams(location.search).get("period");
    let p = asked ? parsePeriod(asked) : null;
    if (asked && !p) showMessage("acc.badPeriod");
    if (!p) p = lastCompleteMonth();
    showPeriodInForm(p);
    await loadPeriod(p);
  }

  start();
})();
