// zerocarbon pages' shared helpers (the live page, the accounts, the group page): the
// language (?lang=, else the one the user chose, kept in localStorage and shared by the
// pages), the translator over the catalogue static/i18n.json, the text of the page's
// [data-i18n] elements and the language toggle, and number formats in the page's
// language. A plain script loaded before each page's own: no libraries, no network
// beyond this app (factory LANs have no internet). Nothing is kept here: every helper
// takes the page's state ({catalogue, lang, ...}) or what else it needs.
"use strict";

window.zc = (() => {
  const LANG_KEY = "zerocarbon.lang"; // localStorage: the language the user chose
  const TOKEN_KEY = "zerocarbon.token"; // sessionStorage: forgotten when the tab closes

  // --- language -----------------------------------------------------------------------

  /** "zh", "zh-CN", "zh-Hans-CN" -> "zh-CN"; "en", "en-GB" -> "en"; else null. */
  function normLang(value) {
    const v = String(value || "").toLowerCase();
    if (v.startsWith("zh")) return "zh-CN";
    if (v.startsWith("en")) return "en";
    return null;
  }

  /** The page's language: ?lang=, else the one the user chose, else `fallback`. */
  function pickLang(fallback) {
    const asked = normLang(new URLSearchParams(location.search).get("lang"));
    if (asked) return asked;
    return normLang(localStorage.getItem(LANG_KEY)) || fallback;
  }

  /** Keep the language the user chose for every page. */
  function keepLang(lang) {
    localStorage.setItem(LANG_KEY, lang);
  }

  /** The language the toggle switches to. */
  const otherLang = (lang) => (lang === "zh-CN" ? "en" : "zh-CN");

  /** t(key, params): the catalogue's text of `key` in the language of `state` (read at
   * each call: state.catalogue, state.lang), else the English one, else the key;
   * `{name}`s filled from `params`. */
  function translator(state) {
    return (key, params) => {
      const book = state.catalogue || {};
      const text = (book[state.lang] || {})[key] ?? (book.en || {})[key] ?? key;
      if (!params) return text;
      return text.replace(/\{(\w+)\}/g, (m, name) => (name in params ? String(params[name]) : m));
    };
  }

  /** The catalogue static/i18n.json, asked for again every 2 s until it comes. */
  async function loadCatalogue() {
    for (;;) {
      try {
        const res = await fetch("static/i18n.json", { cache: "no-cache" });
        if (!res.ok) throw new Error(`HTTP ${res.status}`);
        return await res.json();
      } catch (err) {
        await new Promise((resolve) => setTimeout(resolve, 2000));
      }
    }
  }

  /** The document's language, the text of every [data-i18n] element (its
   * data-i18n-params, when given, fill the text's `{name}`s) and the language toggle. */
  function translatePage(t, lang) {
    document.documentElement.lang = lang;
    for (const el of document.querySelectorAll("[data-i18n]")) {
      const params = el.dataset.i18nParams ? JSON.parse(el.dataset.i18nParams) : null;
      const text = t(el.dataset.i18n, params);
      if (el.textContent !== text) el.textContent = text;
    }
    const toggle = document.getElementById("lang-toggle");
    const label = t("lang.switch");
    if (toggle.textContent !== label) toggle.textContent = label;
    toggle.lang = otherLang(lang);
    toggle.title = t("lang.switchTitle");
  }

  // --- formatting (the page's language) ------------------------------------------------

  /** The page's formats, made once per key in the language of `state` (state.lang);
   * clear() forgets them (a new language or time zone). */
  function formats(state) {
    const cache = new Map();

    /** The format kept under `key`, made by `make()` when there is none. */
    function cached(key, make) {
      if (!cache.has(key)) cache.set(key, make());
      return cache.get(key);
    }

    /** Numbers with exactly `digits` decimals. */
    const number = (digits) =>
      cached(`n${digits}`, () => new Intl.NumberFormat(state.lang, {
        minimumFractionDigits: digits, maximumFractionDigits: digits,
      }));

    /** A number (or a numeric string) to `digits`; "—" when there is none. */
    function fmt(x, digits) {
      if (x === null || x === undefined || !Number.isFinite(Number(x))) return "—";
      return number(digits).format(Number(x));
    }

    /** A share (0.5) as a percentage ("50.0 %"); "—" when it is not a number. */
    function pct(share, digits) {
      if (share === null || share === undefined || !Number.isFinite(share)) return "—";
      return `${number(digits).format(100 * share)} %`;
    }

    return { cached, number, fmt, pct, clear: () => cache.clear() };
  }

  // --- reads --------------------------------------------------------------------------

  /** The Authorization header of the token the user gave this tab, if any. */
  function authHeaders() {
    const token = sessionStorage.getItem(TOKEN_KEY) || "";
    return token ? { Authorization: `Bearer ${token}` } : {};
  }

  /** GET a JSON read: {status, body, detail}; a network failure is status 0.
   *  `onDenied(status)`, if given, is called on 401 or 403. */
  async function getJson(url, onDenied) {
    try {
      const res = await fetch(url, { cache: "no-store", headers: authHeaders() });
      let body = null;
      try {
        body = await res.json();
      } catch (err) {
        body = null;
      }
      if (onDenied && (res.status === 401 || res.status === 403)) onDenied(res.status);
      const detail = body && typeof body.detail === "string" ? body.detail : "";
      return { status: res.status, body: res.ok ? body : null, detail };
    } catch (err) {
      return { status: 0, body: null, detail: String(err) };
    }
  }

  return { normLang, pickLang, keepLang, otherLang, translator, loadCatalogue, translatePage,
    formats, TOKEN_KEY, authHeaders, getJson };
})();
