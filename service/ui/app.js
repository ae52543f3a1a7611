// skimserve's page: pick a model, send a text (or a context and a question), move the threshold, and see
// which tokens were read or skimmed, what the request cost, and where it sits on the model's card curve.
// It calls the public API only (GET /models, /models/{name}, /openapi.json; POST /classify, /qa) and shows
// the API's numbers as they come: every figure element keeps the raw JSON value in data-value.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const SVG = "http://www.w3.org/2000/svg";
  const DEBOUNCE_SLIDER_MS = 200;
  const DEBOUNCE_TEXT_MS = 500;

  const EXAMPLES = {
    classify: "I expected a slow, dull costume drama, and the first half hour did little to change my mind. " +
      "Then the two leads finally share the screen and the film comes alive: the writing is sharp, the " +
      "acting is wonderful, and the ending is genuinely moving. Not perfect, but well worth seeing.",
    qa: {
      context: "The Amazon rainforest covers 5,500,000 km2 of the Amazon basin of South America. The " +
        "majority of the forest is contained within Brazil, with 60% of the rainforest, followed by Peru " +
        "with 13% and Colombia with 10%.",
      question: "How large is the Amazon rainforest?",
    },
  };

  const state = {
    models: [], byName: {}, details: {}, budgetParams: {}, seq: 0, ctrl: null, timer: null,
    last: null, lastUrl: null,
  };

  // ---------------------------------------------------------------- formatting (display only)
  const fmt = {
    int: (n) => Number(n).toLocaleString("en-US"),
    pct: (r) => (100 * r).toFixed(1) + "%",
    x: (r) => r.toFixed(2) + "\u00d7",
    ms: (v) => v.toFixed(3) + " ms",
    us: (v) => v.toFixed(2) + " \u00b5s",
    p: (v) => v.toFixed(4),
    t: (v) => Number(v).toFixed(2),
  };

  function el(tag, attrs, children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === "text") e.textContent = v;
      else if (k === "class") e.className = v;
      else e.setAttribute(k, v === true ? "" : String(v));
    }
    for (const c of children || []) e.append(c);
    return e;
  }

  function svg(tag, attrs, text) {
    const e = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
    if (text !== undefined) e.textContent = text;
    return e;
  }

  // ---------------------------------------------------------------- API
  async function getJSON(path) {
    const r = await fetch(path, { headers: { Accept: "application/json" } });
    const body = await r.json().catch(() => null);
    if (!r.ok) throw apiError(r.status, body);
    return body;
  }

  function apiError(status, body) {
    const code = body && body.code ? body.code : "error";
    const detail = body && body.detail ? body.detail : "no details";
    const err = new Error(`${status} ${code}: ${detail}`);
    err.status = status;
    err.code = code;
    return err;
  }

  // ---------------------------------------------------------------- model choice
  const model = () => state.byName[$("model").value];
  const task = () => (model() ? model().task : "classify");
  const threshold = () => Number(Number($("threshold").value).toFixed(2));

  function fillModels(list) {
    state.models = list.models;
    for (const m of list.models) state.byName[m.name] = m;
    const groups = { classify: "Classify", qa: "Question answering" };
    const sel = $("model");
    sel.replaceChildren();
    for (const t of [...new Set(list.models.map((m) => m.task))]) {
      const og = el("optgroup", { label: groups[t] || t });
      for (const m of list.models.filter((x) => x.task === t)) {
        const isDefault = (list.defaults || {})[t] === m.name;
        og.append(el("option", { value: m.name, text: m.name + (isDefault ? " (default)" : "") }));
      }
      sel.append(og);
    }
    const wanted = new URLSearchParams(location.search).get("model");
    const first = (list.defaults || {}).classify || list.default || list.models[0].name;
    sel.value = state.byName[wanted] ? wanted : first;
  }

  function budgetParam(openapi, path) {
    const op = ((openapi.paths || {})[path] || {}).post || {};
    return (op.parameters || []).find((p) => p.name === "budget" && p.in === "query") || null;
  }

  async function selectModel(resetThreshold) {
    const m = model();
    if (!m) return;
    const isQA = m.task === "qa";
    for (const e of document.querySelectorAll(".task-classify")) e.hidden = isQA;
    for (const e of document.querySelectorAll(".task-qa")) e.hidden = !isQA;
    for (const e of document.querySelectorAll(".qa-only")) e.hidden = !isQA;
    const never = m.skims === false ? " · never skims: the threshold changes nothing" : "";
    $("model-info").textContent = `${m.task} · cell ${m.cell || m.family} · kernel ${m.kernel} · default ` +
      `threshold ${fmt.t(m.default_threshold)}${never}`;
    if (resetThreshold) setThreshold(m.default_threshold);
    showBudget(state.budgetParams[isQA ? "/qa" : "/classify"]);
    if (!state.details[m.name]) {
      try {
        state.details[m.name] = await getJSON(`models/${encodeURIComponent(m.name)}`);
      } catch (e) {
        showError(e.message);
      }
    }
    if (model() === m) drawCurveSources();
  }

  function showBudget(param) {
    const field = $("budget-field");
    field.hidden = !param;
    if (!param) {
      $("budget").value = "";
      return;
    }
    const schema = (param.schema && param.schema.anyOf ? param.schema.anyOf.find((s) => s.type === "number") : param.schema) || {};
    const input = $("budget");
    for (const k of ["minimum", "maximum"]) {
      if (schema[k] !== undefined) input.setAttribute(k === "minimum" ? "min" : "max", schema[k]);
    }
    if (schema.exclusiveMinimum !== undefined) input.setAttribute("min", schema.exclusiveMinimum);
    $("budget-help").textContent = param.description || (param.schema || {}).description || "";
  }

  function setThreshold(v) {
    $("threshold").value = String(v);
    showThreshold();
  }

  function showThreshold() {
    $("threshold-value").textContent = fmt.t(threshold());
    markCurve();
  }

  // ---------------------------------------------------------------- requests
  function schedule(delay) {
    clearTimeout(state.timer);
    state.timer = setTimeout(() => run(false), delay);
  }

  function buildRequest() {
    const m = model();
    const params = new URLSearchParams({ model: m.name, threshold: String(threshold()), explain: "true" });
    const budget = $("budget").value.trim();
    if (!$("budget-field").hidden && budget !== "") params.set("budget", budget);
    if (m.task === "qa") {
      return { path: `qa?${params}`, body: { context: $("context").value, question: $("question").value },
        empty: $("context").value === "" || $("question").value === "" };
    }
    return { path: `classify?${params}`, body: { text: $("text").value }, empty: $("text").value === "" };
  }

  async function run(explicit) {
    clearTimeout(state.timer);
    if (!model()) return;
    const req = buildRequest();
    if (req.empty && !explicit) {
      setStatus(task() === "qa" ? "Give a context and a question." : "Type or paste a text.");
      return;
    }
    if (state.ctrl) state.ctrl.abort();
    const ctrl = (state.ctrl = new AbortController());
    const seq = ++state.seq;
    const results = $("results");
    results.setAttribute("aria-busy", "true");
    results.dataset.state = "loading";
    setStatus("Running\u2026");
    const t0 = performance.now();
    let r, body;
    try {
      r = await fetch(req.path, { method: "POST", signal: ctrl.signal,
        headers: { "Content-Type": "application/json", Accept: "application/json" },
        body: JSON.stringify(req.body) });
      body = await r.json().catch(() => null);
    } catch (e) {
      if (e.name === "AbortError") return;
      if (seq === state.seq) finish(results, "error", `Request failed: ${e.message}`);
      return;
    }
    if (seq !== state.seq) return; // a newer request is on its way
    const roundTrip = performance.now() - t0;
    results.dataset.url = new URL(r.url, location.href).pathname + new URL(r.url, location.href).search;
    if (!r.ok) {
      clearResults();
      finish(results, "error", apiError(r.status, body).message);
      return;
    }
    state.last = body;
    hideError();
    render(body, req);
    finish(results, "done", null);
    setStatus(`${body.model} at threshold ${fmt.t(body.threshold)}: ${roundTrip.toFixed(0)} ms round trip.`);
  }

  function finish(results, how, error) {
    results.removeAttribute("aria-busy");
    if (error) {
      showError(error);
      setStatus("");
    }
    results.dataset.state = how;
  }

  function setStatus(text) { $("status").textContent = text; }
  function showError(text) { const e = $("error"); e.textContent = text; e.hidden = false; }
  function hideError() { const e = $("error"); e.textContent = ""; e.hidden = true; }

  function clearResults() {
    state.last = null;
    $("answer").replaceChildren();
    $("costs").replaceChildren();
    $("tokens").replaceChildren();
    $("per-layer-wrap").hidden = true;
    for (const part of ["thead", "tbody"]) $("token-table").querySelector(part).replaceChildren();
    markCurve();
  }

  // ---------------------------------------------------------------- results
  function figure(key, label, value, text) {
    return el("div", { class: "fig" }, [
      el("dt", { text: label }),
      el("dd", { "data-key": key, "data-value": JSON.stringify(value), text }),
    ]);
  }

  const COSTS = [
    ["tokens", "tokens", fmt.int], ["skimmed", "skimmed", fmt.int], ["skim_rate", "skim rate", fmt.pct],
    ["flops", "FLOPs", fmt.int], ["flops_full", "FLOPs, full LSTM", fmt.int],
    ["flop_reduction", "FLOP reduction", fmt.x], ["latency_ms", "latency (model)", fmt.ms],
    ["per_token_us", "per token", fmt.us],
  ];

  function render(body, req) {
    const isQA = Array.isArray(body.per_layer);
    const costs = $("costs");
    costs.replaceChildren(...COSTS.map(([k, label, f]) =>
      figure(k, isQA && k === "tokens" ? "layer-steps" : label, body[k], f(body[k]))));
    const info = el("p", { class: "served" }, [
      `${body.model} ${body.version} · kernel ${body.kernel} · threshold `,
      el("span", { "data-key": "threshold", "data-value": JSON.stringify(body.threshold),
        text: Array.isArray(body.threshold) ? body.threshold.map(fmt.t).join(", ") : fmt.t(body.threshold) }),
    ]);
    if (isQA) renderQA(body, req, info);
    else renderClassify(body, req, info);
    markCurve();
  }

  function renderClassify(body, req, info) {
    const probs = el("ul", { class: "probs" });
    for (const [name, p] of Object.entries(body.probabilities)) {
      probs.append(el("li", { class: name === body.label ? "best" : null }, [
        el("span", { class: "pname", text: name }),
        el("meter", { min: 0, max: 1, value: p, "aria-label": `probability of ${name}` }),
        el("span", { class: "pval", "data-key": `probabilities.${name}`, "data-value": JSON.stringify(p), text: fmt.p(p) }),
      ]));
    }
    $("answer").replaceChildren(
      el("p", { class: "label" }, ["Label: ", el("strong", { "data-key": "label", "data-value": JSON.stringify(body.label), text: body.label })]),
      probs, info);
    $("per-layer-wrap").hidden = true;
    const text = Array.from(req.body.text.normalize("NFC")); // the API's offsets count code points of the NFC text
    const expl = body.explanation || [];
    const line = el("p", { class: "tokens-line", "data-layer": "rnn" });
    tokenLine(line, text, expl, (e) => e.decision, (e) => e.p_skim, () => false, body.threshold);
    $("tokens").replaceChildren(line);
    $("tokens").setAttribute("aria-label", `${body.skimmed} of ${body.tokens} tokens skimmed`);
    tokenTable(["token", "decision", "p_skim"], expl.map((e) => [e.token, e.decision, fmt.p(e.p_skim)]));
  }

  function renderQA(body, req, info) {
    $("answer").replaceChildren(
      el("p", { class: "label" }, ["Answer: ", el("strong", { class: "ans-text", "data-key": "answer",
        "data-value": JSON.stringify(body.answer), text: body.answer })]),
      el("p", {}, ["Characters ", el("span", { "data-key": "start", "data-value": body.start, text: body.start }), "\u2013",
        el("span", { "data-key": "end", "data-value": body.end, text: body.end }), " of the context · score ",
        el("span", { "data-key": "score", "data-value": JSON.stringify(body.score), text: fmt.p(body.score) }),
        " · ", el("span", { "data-key": "context_tokens", "data-value": body.context_tokens, text: body.context_tokens }),
        " context tokens"]),
      info);
    const tbody = $("per-layer").querySelector("tbody");
    tbody.replaceChildren(...body.per_layer.map((l) => el("tr", { "data-layer": l.layer }, [
      el("th", { scope: "row", text: l.layer }),
      ...[["threshold", fmt.t], ["skimmed", fmt.int], ["skim_rate", fmt.pct], ["flops", fmt.int],
        ["flop_reduction", fmt.x], ["latency_ms", (v) => v.toFixed(3)]].map(([k, f]) =>
        el("td", { "data-key": k, "data-value": JSON.stringify(l[k]), text: f(l[k]) })),
    ])));
    $("per-layer-wrap").hidden = false;
    const text = Array.from(req.body.context); // offsets into the context as sent, in code points
    const expl = body.explanation || [];
    const rows = body.per_layer.map((l) => {
      const [depth, dir] = l.layer.split(".");
      const name = `layer ${Number(depth.slice(1)) + 1} ${dir === "bw" ? "backward" : "forward"}`;
      const line = el("p", { class: "tokens-line", "data-layer": l.layer });
      tokenLine(line, text, expl, (e) => e.decisions[l.layer], (e) => e.p_skim[l.layer], (e) => e.in_answer, l.threshold);
      return el("div", { class: "layer-row" }, [
        el("div", { class: "layer-name" }, [el("strong", { text: name }),
          el("small", { text: ` ${l.layer} · t ${fmt.t(l.threshold)} · ${fmt.pct(l.skim_rate)} skimmed` })]),
        line]);
    });
    $("tokens").replaceChildren(...rows);
    $("tokens").setAttribute("aria-label", `${body.skimmed} of ${body.tokens} layer-steps skimmed`);
    const layers = body.per_layer.map((l) => l.layer);
    tokenTable(["token", "answer", ...layers.map((k) => `${k}`)], expl.map((e) =>
      [e.token, e.in_answer ? "yes" : "", ...layers.map((k) => `${e.decisions[k]} ${fmt.p(e.p_skim[k])}`)]));
  }

  // The text as sent, each explained token wrapped in a span (read or skim); gaps stay plain text.
  function tokenLine(line, chars, expl, decision, pSkim, inAnswer, t) {
    let pos = 0;
    const parts = [];
    for (const e of expl) {
      if (e.start > pos) parts.push(chars.slice(pos, e.start).join(""));
      const d = decision(e);
      const p = pSkim(e);
      const verb = d === "skim" ? "skimmed" : "read";
      parts.push(el("span", {
        class: `tok ${d === "skim" ? "skim" : "read"}${inAnswer(e) ? " ans" : ""}`,
        "data-decision": d, "data-p": JSON.stringify(p),
        title: `${e.token}: ${verb}, p_skim ${fmt.p(p)} ${d === "skim" ? ">" : "\u2264"} ${fmt.t(t)}`,
        text: chars.slice(e.start, e.end).join(""),
      }));
      pos = Math.max(pos, e.end);
    }
    if (pos < chars.length) parts.push(chars.slice(pos).join(""));
    line.replaceChildren(...parts);
  }

  function tokenTable(head, rows) {
    const table = $("token-table");
    table.querySelector("thead").replaceChildren(el("tr", {}, ["#", ...head].map((h) => el("th", { scope: "col", text: h }))));
    table.querySelector("tbody").replaceChildren(...rows.map((r, i) =>
      el("tr", {}, [el("td", { text: i + 1 }), ...r.map((c) => el("td", { text: c }))])));
  }

  // ---------------------------------------------------------------- the curve
  // Sources: the model card's sweep (training.evaluate / evaluate_qa, test split) and, when the manifest
  // has one, the calibration sweep on dev (training.calibrate) that chose the default threshold.
  function curveSources() {
    const d = state.details[model() && model().name];
    if (!d) return [];
    const out = [];
    const card = d.card || {};
    if (card.evaluation && Array.isArray(card.evaluation.sweep) && card.evaluation.sweep.length) {
      out.push({ id: "card", label: `model card: ${card.split || "test"} split, ${fmt.int(card.evaluation.examples)} examples`,
        sweep: card.evaluation.sweep, command: card.command });
    }
    const sel = (d.manifest || {}).default_threshold_selection;
    if (sel && Array.isArray(sel.sweep) && sel.sweep.length) {
      out.push({ id: "calibration", label: `calibration: ${sel.split || "dev"} split, ${fmt.int(sel.examples)} examples`,
        sweep: sel.sweep, command: sel.command });
    }
    return out;
  }

  function drawCurveSources() {
    const sources = curveSources();
    const sel = $("sweep");
    const keep = sel.value;
    sel.replaceChildren(...sources.map((s) => el("option", { value: s.id, text: s.label })));
    if (sources.some((s) => s.id === keep)) sel.value = keep;
    sel.disabled = sources.length < 2;
    drawCurve();
  }

  function metricOf(sweep) {
    if (sweep.some((p) => typeof p.accuracy === "number")) return { key: "accuracy", label: "accuracy %", scale: 100 };
    if (sweep.some((p) => typeof p.f1 === "number")) return { key: "f1", label: "F1", scale: 1 };
    return null;
  }

  function drawCurve() {
    const box = $("curve");
    const src = curveSources().find((s) => s.id === $("sweep").value);
    box.replaceChildren();
    state.curve = null;
    if (!src) {
      $("curve-note").textContent = "This model has no card sweep.";
      $("curve-readout").textContent = "";
      return;
    }
    const sweep = src.sweep.filter((p) => typeof p.threshold === "number").sort((a, b) => a.threshold - b.threshold);
    const metric = metricOf(sweep);
    const panels = [];
    if (metric) panels.push({ key: metric.key, label: metric.label, get: (p) => p[metric.key] * metric.scale, log: false });
    panels.push({ key: "skim_rate", label: "skim rate %", get: (p) => 100 * p.skim_rate, log: false, lo: 0, hi: 100 });
    panels.push({ key: "flop_reduction", label: "FLOP reduction \u00d7 (log)", get: (p) => p.flop_reduction, log: true });

    const W = 360, PH = 92, GAP = 34, L = 46, R = 10, T = 18;
    const H = T + panels.length * (PH + GAP) - GAP + 20;
    const x = (t) => L + t * (W - L - R);
    const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-labelledby": "curve-svg-title curve-svg-desc", class: "chart" });
    root.append(svg("title", { id: "curve-svg-title" }, `${model().name}: ${panels.map((p) => p.label).join(", ")} against threshold`));
    root.append(svg("desc", { id: "curve-svg-desc" }, sweep.map((p) => `threshold ${fmt.t(p.threshold)}: ` +
      panels.map((q) => `${q.label} ${q.get(p).toFixed(2)}`).join(", ")).join("; ")));
    const marks = [];
    panels.forEach((panel, i) => {
      const top = T + i * (PH + GAP);
      const vals = sweep.map(panel.get).filter(Number.isFinite);
      let lo = panel.lo !== undefined ? panel.lo : Math.min(...vals);
      let hi = panel.hi !== undefined ? panel.hi : Math.max(...vals);
      let ticks;
      if (panel.log) {
        lo = Math.min(1, lo) * 0.9; hi = Math.max(hi * 1.1, 1.2);
        ticks = [1, 2, 5, 10, 20, 50, 100, 200, 500].filter((v) => v >= lo && v <= hi);
      } else {
        if (panel.lo === undefined) { const pad = Math.max((hi - lo) * 0.1, 1); lo = Math.floor(lo - pad); hi = Math.ceil(hi + pad); }
        const step = niceStep((hi - lo) / 4);
        ticks = [];
        for (let v = Math.ceil(lo / step) * step; v <= hi + 1e-9; v += step) ticks.push(Number(v.toFixed(6)));
      }
      const f = panel.log ? Math.log10 : (v) => v;
      const y = (v) => top + PH - (f(v) - f(lo)) / (f(hi) - f(lo)) * PH;
      const g = svg("g", { class: "panel-g", "data-panel": panel.key });
      g.append(svg("rect", { x: L, y: top, width: W - L - R, height: PH, class: "frame" }));
      for (const v of ticks) {
        g.append(svg("line", { x1: L, x2: W - R, y1: y(v), y2: y(v), class: "grid" }));
        g.append(svg("text", { x: L - 4, y: y(v) + 3, class: "tick", "text-anchor": "end" }, String(v)));
      }
      for (let t = 0; t <= 1.0001; t += 0.25) {
        g.append(svg("text", { x: x(t), y: top + PH + 12, class: "tick", "text-anchor": "middle" }, t.toFixed(2)));
      }
      g.append(svg("text", { x: L, y: top - 5, class: "axis-label" }, panel.label));
      const pts = sweep.filter((p) => Number.isFinite(panel.get(p)));
      if (pts.length > 1) {
        g.append(svg("polyline", { points: pts.map((p) => `${x(p.threshold).toFixed(1)},${y(panel.get(p)).toFixed(1)}`).join(" "), class: "series" }));
      }
      for (const p of pts) g.append(svg("circle", { cx: x(p.threshold), cy: y(panel.get(p)), r: 2.5, class: "pt" }));
      const def = model().default_threshold;
      g.append(svg("line", { x1: x(def), x2: x(def), y1: top, y2: top + PH, class: "default-line" }));
      const marker = svg("line", { y1: top, y2: top + PH, class: "marker" });
      const dot = svg("circle", { r: 4, class: "marker-dot" });
      const own = svg("rect", { width: 7, height: 7, class: "own", visibility: "hidden" });
      g.append(marker, dot, own);
      const yc = (v) => Math.min(top + PH, Math.max(top, y(v)));
      marks.push({ panel, pts, x, y, yc, marker, dot, own });
      root.append(g);
    });
    box.append(root);
    state.curve = { marks, src, sweep, panels };
    $("curve-note").replaceChildren(
      "Line: the sweep (dots every measured threshold); dashed: the model's default; solid: your threshold; ",
      "square: this request. From ", el("code", { text: src.command || "" }), ".");
    markCurve();
  }

  function niceStep(raw) {
    const p = Math.pow(10, Math.floor(Math.log10(raw)));
    for (const m of [1, 2, 2.5, 5, 10]) if (raw <= m * p) return m * p;
    return 10 * p;
  }

  // The threshold's place on each panel: on a sweep point exactly, or linearly between its neighbours.
  function interpolate(pts, get, t) {
    const exact = pts.find((p) => Math.abs(p.threshold - t) < 1e-9);
    if (exact) return { v: get(exact), exact: true };
    const lo = [...pts].reverse().find((p) => p.threshold < t);
    const hi = pts.find((p) => p.threshold > t);
    if (!lo || !hi) return null;
    const w = (t - lo.threshold) / (hi.threshold - lo.threshold);
    return { v: get(lo) + w * (get(hi) - get(lo)), exact: false };
  }

  function markCurve() {
    const c = state.curve;
    if (!c) return;
    const t = threshold();
    const parts = [];
    const values = {}; // each panel's value at t, as plotted (kept in data-values for checks)
    const last = state.last;
    const own = last && !Array.isArray(last.threshold) && Math.abs(last.threshold - t) < 1e-9 ? last : null;
    for (const m of c.marks) {
      m.marker.setAttribute("x1", m.x(t));
      m.marker.setAttribute("x2", m.x(t));
      const at = interpolate(m.pts, m.panel.get, t);
      m.dot.setAttribute("visibility", at ? "visible" : "hidden");
      values[m.panel.key] = at ? at.v : null;
      if (at) {
        m.dot.setAttribute("cx", m.x(t));
        m.dot.setAttribute("cy", m.y(at.v));
        parts.push(`${m.panel.label.replace(" (log)", "")} ${at.exact ? "" : "\u2248 "}${at.v.toFixed(2)}`);
      }
      // this request's own skim rate and FLOP reduction (one text: no accuracy of its own)
      const ownValue = own && (m.panel.key === "skim_rate" || m.panel.key === "flop_reduction") ? m.panel.get(own) : null;
      if (ownValue !== null && Number.isFinite(ownValue)) {
        m.own.setAttribute("x", m.x(t) - 3.5);
        m.own.setAttribute("y", m.yc(ownValue) - 3.5);
        m.own.setAttribute("visibility", "visible");
      } else {
        m.own.setAttribute("visibility", "hidden");
      }
    }
    const r = $("curve-readout");
    r.dataset.threshold = String(t);
    r.dataset.values = JSON.stringify(values);
    r.textContent = parts.length ? `At threshold ${fmt.t(t)} (${c.src.id === "card" ? "card" : "calibration"} sweep): ${parts.join(", ")}.`
      : `Threshold ${fmt.t(t)} lies outside the sweep.`;
  }

  // ---------------------------------------------------------------- wiring
  function example() {
    if (task() === "qa") {
      $("context").value = EXAMPLES.qa.context;
      $("question").value = EXAMPLES.qa.question;
    } else {
      $("text").value = EXAMPLES.classify;
    }
    run(false);
  }

  async function start() {
    $("threshold").addEventListener("input", () => { showThreshold(); schedule(DEBOUNCE_SLIDER_MS); });
    for (const id of ["text", "context", "question", "budget"]) $(id).addEventListener("input", () => schedule(DEBOUNCE_TEXT_MS));
    $("model").addEventListener("change", async () => {
      clearResults();
      await selectModel(true);
      const req = buildRequest();
      if (req.empty) example();
      else run(false);
    });
    $("sweep").addEventListener("change", drawCurve);
    $("controls").addEventListener("submit", (ev) => { ev.preventDefault(); run(true); });
    $("example").addEventListener("click", example);
    $("reset").addEventListener("click", () => { setThreshold(model().default_threshold); run(false); });
    try {
      const [list, openapi] = await Promise.all([getJSON("models"), getJSON("openapi.json").catch(() => ({}))]);
      state.budgetParams = { "/classify": budgetParam(openapi, "/classify"), "/qa": budgetParam(openapi, "/qa") };
      fillModels(list);
    } catch (e) {
      showError(`Cannot list the models: ${e.message}`);
      return;
    }
    await selectModel(true);
    document.body.dataset.ready = "true";
    example();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
