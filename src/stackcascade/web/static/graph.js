// The deployment graph page: pan and zoom by changing the SVG's viewBox, find stacks, and live node states.
// The server draws the whole graph; without this script it is still there, in a scrollable box.
"use strict";

const Graph = (() => {
  const ZOOM_STEP = 1.25;
  const PAN_STEP = 80; // screen pixels per arrow key press
  const MIN_SCALE = 0.25; // at most 4x magnified (scale = SVG units per screen pixel)
  const START_SCALE = 1.5; // the first view shrinks a large graph at most this much; "Fit" shows it all
  let container = null; // #graph-drawing: holds the fragment that is swapped when stacks or edges change
  let viewport = null;
  let svg = null;
  let view = null; // {x, y, w, h} in SVG units
  let moved = false; // the person panned or zoomed: keep their view across redraws
  let query = "";

  const number = (value) => Number.parseFloat(value) || 0;
  const content = () => ({ w: number(svg.dataset.width), h: number(svg.dataset.height) });
  const scale = () => view.w / Math.max(viewport.clientWidth, 1);

  // Pan freely, but never so far that the drawing leaves the frame: a quarter of the frame stays on it.
  function apply() {
    const { w, h } = content();
    view.x = Math.min(Math.max(view.x, -0.75 * view.w), w - 0.25 * view.w);
    view.y = Math.min(Math.max(view.y, -0.75 * view.h), h - 0.25 * view.h);
    svg.setAttribute("viewBox", [view.x, view.y, view.w, view.h].map((v) => Math.round(v * 10) / 10).join(" "));
  }

  // A view of the content at ``s`` SVG units per screen pixel, centred on (cx, cy).
  function viewAt(s, cx, cy) {
    const w = viewport.clientWidth * s;
    const h = viewport.clientHeight * s;
    view = { x: cx - w / 2, y: cy - h / 2, w, h };
    apply();
  }

  function fitScale() {
    const { w, h } = content();
    return Math.max(w / viewport.clientWidth, h / viewport.clientHeight, 1);
  }

  function fit() {
    const { w, h } = content();
    viewAt(fitScale(), w / 2, h / 2);
  }

  // The first view: everything if that stays readable, else the top of the graph at a readable size.
  function initialView() {
    const { w } = content();
    const s = Math.min(fitScale(), START_SCALE);
    if (s === fitScale()) return fit();
    viewAt(s, w / 2, (viewport.clientHeight * s) / 2);
  }

  function zoom(factor, anchorX, anchorY) {
    const s = Math.min(Math.max(scale() / factor, MIN_SCALE), Math.max(fitScale() * 1.5, 1));
    const rect = viewport.getBoundingClientRect();
    const fx = anchorX === undefined ? 0.5 : (anchorX - rect.left) / rect.width;
    const fy = anchorY === undefined ? 0.5 : (anchorY - rect.top) / rect.height;
    const px = view.x + view.w * fx; // the point under the anchor stays put
    const py = view.y + view.h * fy;
    const w = viewport.clientWidth * s;
    const h = viewport.clientHeight * s;
    view = { x: px - w * fx, y: py - h * fy, w, h };
    moved = true;
    apply();
  }

  function pan(dx, dy) {
    const s = scale();
    view.x += dx * s;
    view.y += dy * s;
    moved = true;
    apply();
  }

  // A frame as tall as the window allows (never taller than the drawing needs at full size).
  function sizeFrame() {
    const { h } = content();
    const room = Math.max(window.innerHeight - viewport.getBoundingClientRect().top - 24, 360);
    viewport.style.height = `${Math.round(Math.min(room, Math.max(h + 2, 260)))}px`;
  }

  function attach(keepView) {
    viewport = document.getElementById("graph-viewport");
    svg = document.getElementById("graph-svg");
    const tools = document.querySelector("[data-graph-tools]");
    if (tools) tools.hidden = !svg; // nothing to pan or find in an org without stacks
    if (!viewport || !svg) return;
    const previous = keepView && moved ? view : null;
    viewport.classList.add("pannable");
    sizeFrame();
    if (previous) {
      view = previous;
      apply();
    } else {
      initialView();
    }
    find(query);
  }

  // --- pointer, wheel and keys ------------------------------------------------------------------

  function wire() {
    let drag = null;
    container.addEventListener("pointerdown", (event) => {
      if (!viewport || !viewport.contains(event.target) || event.button !== 0) return;
      drag = { id: event.pointerId, x: event.clientX, y: event.clientY, moving: false };
    });
    container.addEventListener("pointermove", (event) => {
      if (!drag || event.pointerId !== drag.id) return;
      const dx = event.clientX - drag.x;
      const dy = event.clientY - drag.y;
      if (!drag.moving && Math.hypot(dx, dy) < 4) return;
      if (!drag.moving) {
        drag.moving = true;
        viewport.setPointerCapture(event.pointerId);
        viewport.classList.add("dragging");
      }
      pan(-dx, -dy);
      drag.x = event.clientX;
      drag.y = event.clientY;
    });
    const stop = (event) => {
      if (!drag || event.pointerId !== drag.id) return;
      if (drag.moving) {
        viewport.classList.remove("dragging");
        // The click that ends a drag must not open the stack under the pointer.
        container.addEventListener("click", (click) => click.preventDefault(), { capture: true, once: true });
        setTimeout(() => { drag = null; }, 0);
      } else {
        drag = null;
      }
    };
    container.addEventListener("dragstart", (event) => event.preventDefault()); // links are not dragged away
    container.addEventListener("pointerup", stop);
    container.addEventListener("pointercancel", stop);
    container.addEventListener("wheel", (event) => {
      if (!viewport || !viewport.contains(event.target)) return;
      event.preventDefault();
      zoom(event.deltaY < 0 ? ZOOM_STEP : 1 / ZOOM_STEP, event.clientX, event.clientY);
    }, { passive: false });
    container.addEventListener("keydown", (event) => {
      if (!viewport || !viewport.contains(event.target) || event.altKey || event.ctrlKey || event.metaKey) return;
      const moves = { ArrowLeft: [-PAN_STEP, 0], ArrowRight: [PAN_STEP, 0], ArrowUp: [0, -PAN_STEP], ArrowDown: [0, PAN_STEP] };
      if (moves[event.key]) pan(...moves[event.key]);
      else if (event.key === "+" || event.key === "=") zoom(ZOOM_STEP);
      else if (event.key === "-" || event.key === "_") zoom(1 / ZOOM_STEP);
      else if (event.key === "0") { fit(); moved = false; }
      else return;
      event.preventDefault();
    });
    // Tabbing to a stack outside the view brings it into view.
    container.addEventListener("focusin", (event) => {
      const node = event.target.closest && event.target.closest("g.node");
      if (node && svg && !visible(node)) centreOn(node);
    });
    for (const button of document.querySelectorAll("[data-zoom]")) {
      button.addEventListener("click", () => {
        if (!svg) return;
        const what = button.dataset.zoom;
        if (what === "in") zoom(ZOOM_STEP);
        else if (what === "out") zoom(1 / ZOOM_STEP);
        else if (what === "actual") { viewAt(1, view.x + view.w / 2, view.y + view.h / 2); moved = true; }
        else { fit(); moved = false; }
      });
    }
    window.addEventListener("resize", () => { if (svg) { sizeFrame(); moved ? viewAt(scale(), view.x + view.w / 2, view.y + view.h / 2) : initialView(); } });
  }

  function boxOf(node) {
    const [x, y] = (node.getAttribute("transform") || "").match(/[-\d.]+/g).map(Number);
    const rect = node.querySelector("rect.box");
    return { x, y, w: number(rect.getAttribute("width")), h: number(rect.getAttribute("height")) };
  }

  function visible(node) {
    const b = boxOf(node);
    return b.x >= view.x && b.y >= view.y && b.x + b.w <= view.x + view.w && b.y + b.h <= view.y + view.h;
  }

  function centreOn(node) {
    const b = boxOf(node);
    viewAt(Math.min(scale(), START_SCALE), b.x + b.w / 2, b.y + b.h / 2);
    moved = true;
  }

  // --- finding stacks -------------------------------------------------------------------------

  function find(text) {
    query = text.trim().toLowerCase();
    const found = document.getElementById("graph-found");
    if (!svg) return;
    const nodes = svg.querySelectorAll("g.node[data-stack]");
    svg.classList.toggle("finding", query !== "");
    const hits = new Set();
    for (const node of nodes) {
      const haystack = `${node.dataset.stack} ${node.querySelector("text.label").textContent}`.toLowerCase();
      const hit = query !== "" && haystack.includes(query);
      node.classList.toggle("match", hit);
      node.classList.toggle("dim", query !== "" && !hit);
      if (hit) hits.add(node.dataset.stack);
    }
    for (const edge of svg.querySelectorAll("g.edge")) {
      edge.classList.toggle("near", hits.has(edge.dataset.from) || hits.has(edge.dataset.to));
    }
    if (found) found.textContent = query ? `${hits.size} of ${nodes.length} stacks match` : "";
    return hits;
  }

  function wireFind() {
    const input = document.getElementById("graph-find");
    if (!input) return;
    input.addEventListener("input", () => find(input.value));
    input.addEventListener("keydown", (event) => {
      if (event.key !== "Enter") return;
      event.preventDefault();
      const first = svg && svg.querySelector("g.node.match");
      if (first) centreOn(first);
    });
  }

  // --- live states ----------------------------------------------------------------------------

  let timer = null;
  let busy = false;
  let again = false;

  function schedule(delay = 150) {
    if (!timer) timer = setTimeout(refresh, delay);
  }

  async function refresh() {
    timer = null;
    if (busy) { again = true; return; }
    busy = true;
    try {
      const response = await fetch(container.dataset.stateUrl, { headers: { "X-Requested-With": "console" } });
      if (!response.ok) return;
      const state = await response.json();
      if (!svg || state.shape !== svg.dataset.shape) await redraw();
      else paint(state.nodes);
      const cascades = document.getElementById("graph-cascades");
      if (cascades && cascades.innerHTML.trim() !== state.cascades.trim()) cascades.innerHTML = state.cascades;
    } catch (_) {
      // The next change tries again; the live badge already says when the stream is down.
    } finally {
      busy = false;
      if (again) { again = false; schedule(); }
    }
  }

  function paint(nodes) {
    for (const node of svg.querySelectorAll("g.node[data-stack]")) {
      const s = nodes[node.dataset.stack];
      if (!s || node.dataset.status === s.status && node.dataset.name === s.name) continue;
      for (const cls of [...node.classList]) if (cls.startsWith("st-")) node.classList.remove(cls);
      node.classList.add(s.cls);
      node.classList.toggle("paused", s.paused);
      node.classList.toggle("gated", s.gated);
      node.dataset.status = s.status;
      node.dataset.name = s.name;
      node.querySelector("text.label").textContent = s.label;
      node.querySelector("text.flags").textContent = s.flags;
      node.querySelector("use.icon").setAttribute("href", `#icon-${s.cls}`);
      node.querySelector("title").textContent = `${node.dataset.stack}: ${s.label}`;
      node.querySelector("a").setAttribute("aria-label", s.name);
    }
    if (query) find(query);
  }

  async function redraw() {
    const response = await fetch(container.dataset.drawingUrl, { headers: { "X-Requested-With": "console" } });
    if (!response.ok) return;
    const hadFocus = document.activeElement && container.contains(document.activeElement);
    container.innerHTML = await response.text();
    attach(true);
    if (hadFocus && viewport) viewport.focus({ preventScroll: true });
  }

  function start() {
    container = document.getElementById("graph-drawing");
    if (!container) return;
    attach(false);
    wire();
    wireFind();
    if (typeof Console !== "undefined") {
      Console.onChange(() => schedule());
      schedule(800); // catches what changed between this page's rendering and the stream's start
      // A safety net for changes missed while the stream reconnected, and for a tab coming back.
      setInterval(() => { if (!document.hidden) schedule(); }, 30_000);
      document.addEventListener("visibilitychange", () => { if (!document.hidden) schedule(); });
    }
  }

  document.addEventListener("DOMContentLoaded", start);
  return { zoom, pan, fit, find, refresh };
})();
