// Hover and click behaviour of the app's interactive views (gr.HTML components; see demo/views/html.py).
// Gradio runs this once per component with `element` (the component's node) and `watch`; the HTML inside
// is replaced on every update, so every listener is delegated from `element` and every view is drawn again
// after an update. The data a view needs travels as JSON in data- attributes of its root node.

const VIRIDIS = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];
const MASKED = "#d4d4d4";

function colour(v) {  // viridis, v in [0, 1]
  const x = Math.max(0, Math.min(1, v)) * (VIRIDIS.length - 1);
  const i = Math.min(Math.floor(x), VIRIDIS.length - 2), f = x - i;
  const c = VIRIDIS[i].map((a, k) => Math.round(a + f * (VIRIDIS[i + 1][k] - a)));
  return `rgb(${c[0]},${c[1]},${c[2]})`;
}

function unpack(packed, n) {  // html.packed_weights: row q of the lower triangle holds q + 1 weights
  const bytes = Uint8Array.from(atob(packed), (c) => c.charCodeAt(0));
  const all = new Uint16Array(bytes.buffer), rows = [];
  for (let q = 0, at = 0; q < n; at += ++q) rows.push(Array.from(all.subarray(at, at + q + 1), (v) => v / 65535));
  return rows;
}

function half(h) {  // an IEEE float16 from its 16 bits (html.packed_scores)
  const sign = h & 0x8000 ? -1 : 1, exp = (h >> 10) & 0x1f, frac = h & 0x3ff;
  if (exp === 0) return sign * frac * 2 ** -24;
  if (exp === 31) return frac ? NaN : sign * Infinity;
  return sign * (1 + frac / 1024) * 2 ** (exp - 15);
}

function unpackScores(packed, n) {
  const bytes = Uint8Array.from(atob(packed), (c) => c.charCodeAt(0));
  const all = new Uint16Array(bytes.buffer), rows = [];
  for (let q = 0, at = 0; q < n; at += ++q) rows.push(Array.from(all.subarray(at, at + q + 1), half));
  return rows;
}

function parsed(root) {  // the view's data, read once per rendering (render() forgets it)
  if (!root._gc) {
    root._gc = {};
    for (const [key, text] of Object.entries(root.dataset)) {
      if (key.startsWith("j")) root._gc[key.slice(1).toLowerCase()] = JSON.parse(text);
    }
    if (root.dataset.weights) root._gc.weights = unpack(root.dataset.weights, root._gc.pieces.length);
    if (root.dataset.scores) root._gc.scores = unpackScores(root.dataset.scores, root._gc.pieces.length);
  }
  return root._gc;
}

function pct(p) { return p >= 0.995 ? "100%" : p >= 0.0995 ? `${(100 * p).toFixed(0)}%` : `${(100 * p).toFixed(1)}%`; }

function escapeText(s) {
  return s.replace(/[&<>"']/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c]));
}

// ---- attention: a token strip and a heatmap of one head -------------------------------------------------

function attentionWeights(d, i, dir) {  // weight of every position for token i, null where there is none
  const out = new Array(d.pieces.length).fill(null);
  if (dir === "from") d.weights[i].forEach((v, j) => { out[j] = v; });
  else for (let q = i; q < d.weights.length; q++) out[q] = d.weights[q][i];
  return out;
}

function showAttention(root, i) {
  const d = parsed(root), tokens = root.querySelectorAll(".gc-tok");
  const dir = root.dataset.dir || "from";
  tokens.forEach((t) => { t.style.background = ""; t.style.color = ""; t.classList.remove("gc-focus"); });
  const info = root.querySelector(".gc-info");
  if (i === null || i === undefined) {
    info.textContent = root.dataset.hint;
    showSteps(root, null);
    drawHeat(root, null);
    return;
  }
  const weights = attentionWeights(d, i, dir);
  weights.forEach((w, j) => {
    if (w === null) return;
    tokens[j].style.background = `rgba(234, 88, 12, ${Math.min(1, 0.08 + 1.2 * w).toFixed(3)})`;
    if (w > 0.45) tokens[j].style.color = "white";
  });
  tokens[i].classList.add("gc-focus");
  const ranked = weights.map((w, j) => [w, j]).filter((x) => x[0] !== null).sort((a, b) => b[0] - a[0]).slice(0, 5);
  const name = (j) => `'${d.labels[j]}' (${j + 1})`;
  info.textContent = (dir === "from" ? `${name(i)} looks at: ` : `${name(i)} is looked at by: `) +
    ranked.map(([w, j]) => `${name(j)} ${pct(w)}`).join(", ");
  showSteps(root, dir === "from" ? i : null);
  drawHeat(root, i);
}

function showSteps(root, i) {  // how query i's weights come from its scores: scale, mask, softmax
  const d = parsed(root), panel = root.querySelector(".gc-steps");
  if (!panel) return;
  if (!d.scores || i === null || i === undefined) { panel.innerHTML = ""; return; }
  const scores = d.scores[i], top = Math.max(...scores);
  const exps = scores.map((s) => Math.exp(s - top)), total = exps.reduce((a, b) => a + b, 0);
  const order = scores.map((_, j) => j).sort((a, b) => scores[b] - scores[a]);
  const shown = order.slice(0, 5), rest = order.slice(5).reduce((a, j) => a + exps[j] / total, 0);
  const rows = shown.map((j) => `<tr><td>${escapeText(d.labels[j])} (${j + 1})</td><td>${scores[j].toFixed(2)}</td>` +
    `<td>${exps[j].toFixed(3)}</td><td>${pct(exps[j] / total)}</td></tr>`).join("");
  const more = order.length > 5 ? `<tr><td>${order.length - 5} others</td><td></td><td></td><td>${pct(rest)}</td></tr>` : "";
  const later = d.pieces.length - i - 1;
  panel.innerHTML = `<details open><summary>How the weights of '${escapeText(d.labels[i])}' (${i + 1}) are made</summary>` +
    `<p>Its query is compared with the key of each ${root.dataset.unit} it may see (${i + 1}: itself and the ones before): ` +
    `the dot product q·k, divided by √(head size), is the <b>score</b>. ` +
    (later ? `The ${later} later ${root.dataset.unit}s are masked (score −∞, weight 0). ` : "") +
    `Softmax turns scores into weights: e<sup>score − top score</sup>, divided by their sum (${total.toFixed(3)}).</p>` +
    `<table><tr><th>key</th><th>score</th><th>e<sup>score − top</sup></th><th>weight</th></tr>${rows}${more}</table></details>`;
}

function drawHeat(root, focus) {
  const canvas = root.querySelector("canvas.gc-heat");
  if (!canvas) return;
  const d = parsed(root), n = d.pieces.length, cell = Number(root.dataset.cell);
  const margin = 34, size = margin + n * cell, ratio = window.devicePixelRatio || 1;
  canvas.width = size * ratio; canvas.height = size * ratio;
  canvas.style.width = `${size}px`; canvas.style.height = `${size}px`;
  const g = canvas.getContext("2d");
  g.scale(ratio, ratio);
  g.fillStyle = MASKED;
  g.fillRect(margin, margin, n * cell, n * cell);
  const top = Math.max(...d.weights.map((row) => Math.max(...row)));
  for (let q = 0; q < n; q++) {
    d.weights[q].forEach((w, k) => {
      g.fillStyle = colour(w / top);
      g.fillRect(margin + k * cell, margin + q * cell, cell, cell);
    });
  }
  if (focus !== null && focus !== undefined) {
    g.strokeStyle = "#ea580c"; g.lineWidth = 2;
    if ((root.dataset.dir || "from") === "from") g.strokeRect(margin, margin + focus * cell, (focus + 1) * cell, cell);
    else g.strokeRect(margin + focus * cell, margin + focus * cell, cell, (n - focus) * cell);
  }
  const font = Math.min(12, Math.max(9, cell - 2)), every = Math.ceil(font / cell);
  g.font = `${font}px ui-monospace, monospace`; g.fillStyle = "#374151"; g.textAlign = "center"; g.textBaseline = "middle";
  for (let j = 0; j < n; j += every) {
    const label = d.labels[j].slice(0, 3);
    g.fillText(label, margin + (j + 0.5) * cell, margin / 2);
    g.fillText(label, margin / 2, margin + (j + 0.5) * cell);
  }
}

function heatCell(root, event) {  // [query, key] under the pointer, or null
  const canvas = root.querySelector("canvas.gc-heat"), box = canvas.getBoundingClientRect();
  const cell = Number(root.dataset.cell), margin = 34;
  const k = Math.floor((event.clientX - box.left - margin) / cell), q = Math.floor((event.clientY - box.top - margin) / cell);
  const n = parsed(root).pieces.length;
  return q >= 0 && k >= 0 && q < n && k < n ? [q, k] : null;
}

// ---- predictions: click a token to see the distribution of what comes after it --------------------------

function showPrediction(root, i) {
  const d = parsed(root), tokens = root.querySelectorAll(".gc-tok");
  tokens.forEach((t) => t.classList.remove("gc-focus"));
  tokens[i].classList.add("gc-focus");
  const next = d.next[i], panel = root.querySelector(".gc-dist");
  const rows = d.top[i].map(([piece, p]) => {
    const hit = next && piece === next[0] ? " gc-hit" : "";
    return `<div class="gc-bar${hit}"><code>${escapeText(piece)}</code><span style="width:${(100 * p).toFixed(1)}%"></span>` +
      `<em>${pct(p)}</em></div>`;
  }).join("");
  const after = `after '${escapeText(d.labels[i])}' (${root.dataset.unit} ${i + 1})`;
  const truth = next ? `The text goes on with <code>${escapeText(next[0])}</code>: the model gave it ${pct(next[1])} ` +
    `(a surprise of ${next[2].toFixed(2)} nats).` : "This is the end of the text: what the model would write next.";
  panel.innerHTML = `<p>Most likely ${after}:</p>${rows}<p>${truth}</p>`;
}

// ---- wiring ---------------------------------------------------------------------------------------------

function viewOf(target) { return target.closest ? target.closest(".gc-view") : null; }

function tokenIndex(target) {
  const t = target.closest ? target.closest(".gc-tok") : null;
  return t ? Number(t.dataset.i) : null;
}

function show(root, i) {
  if (root.classList.contains("gc-att")) showAttention(root, i);
  else if (root.classList.contains("gc-pred") && i !== null) showPrediction(root, i);
}

function pinned(root) { return root.dataset.pin === undefined ? null : Number(root.dataset.pin); }

element.addEventListener("mouseover", (event) => {
  const root = viewOf(event.target), i = tokenIndex(event.target);
  if (root && i !== null && pinned(root) === null) show(root, i);
});
element.addEventListener("mouseleave", (event) => {  // leaving the whole view (not one of its tokens) resets it
  const root = event.target;
  if (root.matches && root.matches(".gc-att") && pinned(root) === null) showAttention(root, null);
}, true);
element.addEventListener("mousemove", (event) => {
  const root = viewOf(event.target);
  if (!root || !event.target.matches("canvas.gc-heat")) return;
  const hit = heatCell(root, event), d = parsed(root), tip = root.querySelector(".gc-tip");
  if (!hit || hit[1] > hit[0]) { tip.textContent = hit ? "the future: a causal model cannot look there" : ""; return; }
  const [q, k] = hit;
  tip.textContent = `query '${d.labels[q]}' (${q + 1}) → key '${d.labels[k]}' (${k + 1}): ${pct(d.weights[q][k])}`;
});
element.addEventListener("click", (event) => {
  const root = viewOf(event.target);
  if (!root) return;
  const button = event.target.closest("button[data-act]");
  if (button) {
    const act = button.dataset.act;
    if (act === "zoom-in" || act === "zoom-out") {
      const cell = Number(root.dataset.cell) + (act === "zoom-in" ? 3 : -3);
      root.dataset.cell = String(Math.max(4, Math.min(30, cell)));
    } else {
      root.dataset.dir = act;
      root.querySelectorAll("button[data-act='from'], button[data-act='to']")
        .forEach((b) => b.setAttribute("aria-pressed", String(b.dataset.act === act)));
    }
    show(root, pinned(root));
    return;
  }
  let i = tokenIndex(event.target);
  if (i === null && event.target.matches("canvas.gc-heat")) {
    const hit = heatCell(root, event);
    i = hit ? hit[0] : null;
  }
  if (i === null) return;
  if (root.classList.contains("gc-att") && pinned(root) === i) { delete root.dataset.pin; show(root, null); return; }
  root.dataset.pin = String(i);
  show(root, i);
});
element.addEventListener("keydown", (event) => {  // tokens are focusable: Enter or Space pins one
  if ((event.key === "Enter" || event.key === " ") && tokenIndex(event.target) !== null) {
    event.preventDefault();
    event.target.click();
  }
});

function render() {
  element.querySelectorAll(".gc-view").forEach((root) => {
    delete root._gc;
    if (root.classList.contains("gc-att")) {
      if (!root.dataset.cell) {
        const width = root.querySelector(".gc-heat-wrap").clientWidth || 600, n = parsed(root).pieces.length;
        root.dataset.cell = String(Math.max(10, Math.min(24, Math.floor((width - 40) / n))));
      }
      showAttention(root, pinned(root));
    } else if (root.classList.contains("gc-pred")) {
      showPrediction(root, pinned(root) ?? parsed(root).top.length - 1);
    }
  });
}

// Gradio patches the old view into the new one in place (the same root node), and tells `watch` in a step of
// its own: a view is read and drawn again whenever its data change in the page, whichever of the two comes first
const SENT = ["data-weights", "data-scores", "data-jpieces", "data-jlabels", "data-jtop", "data-jnext"];
const isView = (node) => node.nodeType === 1 && (node.matches(".gc-view") || node.querySelector(".gc-view"));
new MutationObserver((records) => {
  if (records.some((r) => (r.type === "attributes" ? r.target.matches(".gc-view") : [...r.addedNodes].some(isView)))) {
    render();
  }
}).observe(element, {subtree: true, childList: true, attributes: true, attributeFilter: SENT});
watch("value", render);
render();
