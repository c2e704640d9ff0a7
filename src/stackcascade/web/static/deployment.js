// The deployment page: follow one deployment's log and state over its own event stream.
// Without this script the page still shows the log so far; with it, new lines are appended (no reload),
// the status and steps are swapped in as they change, and the view stays at the bottom unless scrolled up.
"use strict";

(() => {
  function start() {
    const log = document.getElementById("log");
    if (!log || !log.dataset.stream) return;
    const status = document.getElementById("log-follow");
    let header = log.dataset.lastHeader || "";

    const say = (text) => { if (status) status.textContent = text; };
    const nearBottom = () => log.scrollHeight - log.scrollTop - log.clientHeight < 32;
    log.scrollTop = log.scrollHeight;

    function append(lines) {
      const stick = nearBottom();
      const piece = document.createDocumentFragment();
      for (const entry of lines) {
        if (entry.header !== header) {
          header = entry.header;
          const step = document.createElement("span");
          step.className = "log-step";
          step.textContent = `▸ ${header}`;
          piece.append(step, "\n");
        }
        piece.append(`${entry.line}\n`);
      }
      log.append(piece);
      if (stick) log.scrollTop = log.scrollHeight;
    }

    function swap(regions) {
      for (const [id, html] of Object.entries(regions)) {
        const region = document.getElementById(id);
        if (region && region.innerHTML !== html) region.innerHTML = html;
      }
    }

    const source = new EventSource(log.dataset.stream);
    source.addEventListener("hello", () => say("Following the log live."));
    source.addEventListener("log", (message) => append(JSON.parse(message.data).lines));
    source.addEventListener("state", (message) => {
      const data = JSON.parse(message.data);
      swap(data.regions);
      log.dataset.status = data.status;
    });
    source.addEventListener("end", (message) => {
      source.close();
      const data = JSON.parse(message.data || "{}");
      say(data.message ? `Stopped following: ${data.message}` : "The deployment is over: this is the complete log.");
    });
    source.onerror = () => { if (source.readyState !== EventSource.CLOSED) say("Connection lost: reconnecting…"); };
  }

  document.addEventListener("DOMContentLoaded", start);
})();
