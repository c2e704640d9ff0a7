// stackcascade console: live refresh over server-sent events, CSRF for scripted posts, small enhancements.
// No framework: pages are server-rendered and work without this script; it only keeps them current.
"use strict";

const Console = (() => {
  const csrf = () => document.querySelector('meta[name="csrf-token"]')?.content || "";
  const listeners = [];
  let source = null;

  function setLiveState(state, text) {
    const badge = document.getElementById("live-status");
    if (badge) { badge.dataset.state = state; badge.textContent = text; }
  }

  // One EventSource per page; handlers get {events: [...], cascades: bool} on every change.
  function onChange(handler) {
    listeners.push(handler);
    connect();
  }

  function connect() {
    const url = document.body.dataset.live;
    if (!url || source) return;
    source = new EventSource(url);
    // On every (re)connection, catch up once: a change may have committed between this page being
    // rendered (or the stream dropping) and the stream starting.
    source.addEventListener("hello", () => {
      setLiveState("live", "live");
      for (const handler of listeners) handler({ events: [], cascades: true, connected: true });
    });
    source.addEventListener("change", (message) => {
      let data = {};
      try { data = JSON.parse(message.data); } catch (_) { return; }
      for (const handler of listeners) handler(data);
    });
    source.onerror = () => setLiveState("reconnecting", "reconnecting…");
  }

  // What tells a control apart from its neighbours in freshly rendered markup: its id, where its form
  // posts, where it links to and its words (an action button names its stack, e.g. "Approve app/prod").
  function identity(el) {
    return [el.tagName, el.id, el.getAttribute("href"), el.form?.getAttribute("action"), el.getAttribute("name"),
      el.textContent.trim()].join("\u0000");
  }

  // The swap replaces the element that had the keyboard focus: give focus to its counterpart in the new
  // markup, or, when that is gone (someone else approved the stack), to the first control of the same
  // stack's card, else to the region itself -- never back to the top of the page.
  function restoreFocus(region, key, stack) {
    for (const candidate of region.querySelectorAll("a[href], button, input, select, textarea, summary, [tabindex]")) {
      if (identity(candidate) === key) { candidate.focus({ preventScroll: true }); return; }
    }
    const card = stack ? [...region.querySelectorAll("[data-stack]")].find((el) => el.dataset.stack === stack) : null;
    const fallback = card?.querySelector("a[href], button");
    if (fallback) { fallback.focus({ preventScroll: true }); return; }
    if (!region.hasAttribute("tabindex")) region.setAttribute("tabindex", "-1");
    region.focus({ preventScroll: true });
  }

  // Fetch this page again and swap in every [data-live-refresh] region by id (no full reload).
  let pending = null;
  function refreshRegions(delay = 150) {
    if (pending) return;
    pending = setTimeout(async () => {
      pending = null;
      const response = await fetch(location.href, { headers: { "X-Requested-With": "console" } });
      if (!response.ok) return;
      const fresh = new DOMParser().parseFromString(await response.text(), "text/html");
      for (const region of document.querySelectorAll("[data-live-refresh][id]")) {
        const next = fresh.getElementById(region.id);
        if (next && next.innerHTML !== region.innerHTML) {
          const focused = document.activeElement;
          const had = focused && focused !== region && region.contains(focused);
          const key = had ? identity(focused) : null;
          const stack = had ? focused.closest("[data-stack]")?.dataset.stack : null;
          region.innerHTML = next.innerHTML;
          if (had) restoreFocus(region, key, stack);
          region.dispatchEvent(new CustomEvent("console:refreshed", { bubbles: true }));
        }
      }
      document.dispatchEvent(new CustomEvent("console:refreshed"));
    }, delay);
  }

  async function post(url, fields = {}) {
    const body = new URLSearchParams({ csrf: csrf(), ...fields });
    return fetch(url, { method: "POST", body, headers: { "X-Requested-With": "console", "X-CSRF-Token": csrf() } });
  }

  function enhance() {
    for (const select of document.querySelectorAll("select[data-autosubmit]")) {
      select.addEventListener("change", () => select.form.requestSubmit());
    }
    document.addEventListener("submit", (event) => {
      const message = event.target.dataset?.confirm;
      if (message && !window.confirm(message)) event.preventDefault();
    });
    if (document.querySelector("[data-live-refresh]")) onChange(() => refreshRegions());
    else if (document.body.dataset.live) connect();
  }

  document.addEventListener("DOMContentLoaded", enhance);
  return { onChange, refreshRegions, post, csrf, setLiveState };
})();
