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
          region.innerHTML = next.innerHTML;
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
