// The latent explorer's page: every slider change sends the whole exploration (base batch + moves) as one JSON request;
// the server's G answers with a PNG. One request per image is in flight at a time: a drag that outruns the server
// sends only its newest position when the previous answer arrives.
"use strict";

const SCALE = 4;  // 28-pixel images, shown 4× with crisp pixels
const $ = id => document.getElementById(id);
const page = {state: null, rows: []};

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function pct(value) { return `${(100 * value).toFixed(0)}%`; }
function signed(value, digits = 0) {  // the sign of the number as shown: never "−0"
  const text = Math.abs(value).toFixed(digits);
  return Number(text) === 0 ? text : value > 0 ? `+${text}` : `−${text}`;
}
function amountLabel(mode, amount) { return mode === "set" ? `= ${amount}` : signed(amount, amount % 1 ? 1 : 0); }

// Sends body() to an endpoint and shows the answer in an <img>; calls after(milliseconds, error) when done.
function coalescing(endpoint, image, body, after) {
  let inFlight = false, stale = false, shownUrl = null;
  async function send() {
    stale = false;
    inFlight = true;
    image.dataset.pending = "1";
    const started = performance.now();
    try {
      const response = await fetch(endpoint, {method: "POST", headers: {"Content-Type": "application/json"},
                                              body: JSON.stringify(body())});
      if (!response.ok) {
        after(null, (await response.json()).error);
      } else {
        const url = URL.createObjectURL(await response.blob());
        await new Promise((resolve, reject) => { image.onload = resolve; image.onerror = reject; image.src = url; });
        image.style.width = `${image.naturalWidth * SCALE}px`;
        if (shownUrl) URL.revokeObjectURL(shownUrl);
        shownUrl = url;
        image.dataset.renders = String(Number(image.dataset.renders) + 1);
        const timing = /dur=([\d.]+)/.exec(response.headers.get("Server-Timing") || "");
        after(performance.now() - started, null, timing ? Number(timing[1]) : null);
      }
    } catch (error) {
      after(null, String(error));
    } finally {
      inFlight = false;
      if (stale) send(); else image.dataset.pending = "0";
    }
  }
  return () => { stale = true; image.dataset.pending = "1"; if (!inFlight) send(); };
}

function exploration() {
  const fromFile = $("base-kind").value === "file";
  return {base: fromFile ? "file" : Number($("seed").value), samples: page.state.base.samples,
          moves: page.rows.filter(row => row.active()).map(row => row.move())};
}

function sampleCount() {
  return $("base-kind").value === "file" ? page.state.base.file.samples : page.state.base.samples;
}

let renderGrid = () => {}, renderStrip = () => {};
function changed() { renderGrid(); renderStrip(); $("save-status").textContent = ""; }

// What the latent study measured for this direction, nearest to the slider's setting.
function effectNodes(key, mode, amount) {
  const state = page.state;
  if (!state.study) return [el("span", "missing", state.study_line)];
  const panel = state.effects[key];
  if (!panel) return [el("span", "missing", `${key}: not measured by the latent study`)];
  const rows = panel.measured.filter(row => row.mode === mode);
  if (!rows.length) return [el("span", "missing", `the latent study measured no ${mode === "set" ? "set values" :
                                                                                   "offsets"} of ${key}`)];
  // At offset 0 nothing moves: show the offset every direction was measured at.
  const target = mode === "offset" && amount === 0 ? (state.study.grid_offset ?? rows[rows.length - 1].amount) : amount;
  const distance = row => Math.abs(row.amount - target);
  const row = rows.reduce((best, other) => distance(other) < distance(best) ? other : best);
  const first = el("div");
  first.append(el("span", "where", `${row.amount === amount ? "at this value" : "nearest measured"}: ` +
                                   `${amountLabel(mode, row.amount)} (${row.samples} samples) · `));
  row.shifts.forEach((shift, number) => {
    const part = el("span", "shift");
    part.append(el("b", "", `P(${shift.class})`), ` ${signed(100 * shift.shift)}% ± ${pct(shift.ci)}`);
    first.append(number ? " · " : "", part);
  });
  const second = el("div");
  second.append("class changes for ", el("span", "flip", pct(row.flip[0])),
                ` (${pct(row.flip[1])}–${pct(row.flip[2])}) · mean |Δpixel| ${row.mean_abs[0].toFixed(3)} ± ` +
                `${row.mean_abs[1].toFixed(3)} · L2 ${row.l2[0].toFixed(2)} ± ${row.l2[1].toFixed(2)}`);
  const nodes = [first, second];
  if (panel.versus_random) {
    const random = panel.versus_random;
    const third = el("div", "versus");
    third.textContent = `at ±${random.offset} it changes the class of more samples than ${random.beaten} of ` +
      `${random.directions} random directions (their 5–95%: ${pct(random.band[0])}–${pct(random.band[1])})` +
      (panel.dim_rank ? ` · rank ${panel.dim_rank.rank} of ${panel.dim_rank.of} dims` : "");
    nodes.push(third);
  }
  return nodes;
}

function sliderRow(family, index, removable) {
  const state = page.state, key = `${family} ${index}`;
  const setting = {family, index, mode: "offset", amount: 0};
  const widest = Math.max(state.slider_range, ...state.set_values.map(Math.abs));
  const row = el("div", "slider-row");
  row.dataset.key = key;
  const mode = el("select", "mode");
  mode.append(new Option("offset z + a", "offset"));
  if (family === "dim") mode.append(new Option(`set z[${index}] = a`, "set"));
  mode.disabled = family !== "dim";
  const slider = el("input");
  Object.assign(slider, {type: "range", step: "0.1", value: "0"});
  slider.setAttribute("aria-label", key);
  const amount = el("input", "amount");
  Object.assign(amount, {type: "number", step: "any", value: "0"});
  amount.setAttribute("aria-label", `${key} amount`);
  const effect = el("div", "effect");
  const buttons = el("div", "buttons");

  function show() {
    const range = setting.mode === "set" ? widest : state.slider_range;
    slider.min = String(-range);
    slider.max = String(range);
    mode.value = setting.mode;
    slider.value = String(setting.amount);
    if (Number(amount.value) !== setting.amount) amount.value = String(setting.amount);
    row.classList.toggle("active", api.active());
    effect.replaceChildren(...effectNodes(key, setting.mode, setting.amount));
  }
  function update(changes) { Object.assign(setting, changes); show(); changed(); }

  slider.addEventListener("input", () => update({amount: Number(slider.value)}));
  amount.addEventListener("input", () => {
    if (amount.value !== "" && Number.isFinite(Number(amount.value))) update({amount: Number(amount.value)});
  });
  mode.addEventListener("change", () => update({mode: mode.value}));
  if (family === "dim") {
    for (const value of state.set_values) {
      const button = el("button", "", `= ${value}`);
      button.type = "button";
      button.addEventListener("click", () => update({mode: "set", amount: value}));
      buttons.append(button);
    }
  }
  const reset = el("button", "reset", "reset");
  reset.type = "button";
  reset.addEventListener("click", () => update({mode: "offset", amount: 0}));
  buttons.append(reset);
  if (removable) {
    const remove = el("button", "remove", "remove");
    remove.type = "button";
    remove.addEventListener("click", () => {
      page.rows = page.rows.filter(other => other !== api);
      row.remove();
      changed();
    });
    buttons.append(remove);
  }
  row.append(el("span", "name", family === "dim" ? `z[${index}]` : key), mode, slider, amount, effect, buttons);
  const api = {
    key,
    element: row,
    active: () => setting.mode === "set" || setting.amount !== 0,
    move: () => ({...setting}),
    reset: () => { Object.assign(setting, {mode: "offset", amount: 0}); show(); },
  };
  show();
  return api;
}

function addRow(container, family, index, removable) {
  const row = sliderRow(family, index, removable);
  page.rows.push(row);
  $(container).append(row.element);
}

function fillSampleChoices() {
  const count = sampleCount();
  for (const [id, preferred] of [["from", 0], ["to", Math.min(1, count - 1)]]) {
    const select = $(id), kept = Number(select.value);
    select.replaceChildren(...Array.from({length: count}, (_, number) => new Option(String(number), String(number))));
    select.value = String(select.options.length && kept < count && select.dataset.chosen ? kept : preferred);
  }
}

function build(state) {
  page.state = state;
  $("source").textContent = `· run ${state.run.name} (${state.run.id.slice(0, 8)}), ${state.run.arch}, ` +
                            `${state.run.latent_dim}-dim z`;
  $("study-line").textContent = state.study_line;
  $("seed").value = String(state.base.seed);
  if (state.base.file) {  // a --z-file is what the user came to see: the page opens on it
    $("base-kind").append(new Option(`--z-file ${state.base.file.name}`, "file"));
    $("base-kind").value = "file";
  }
  for (const dim of state.dims) addRow("dim-sliders", "dim", dim, false);
  addDirectionRows(state);
  $("new-dim").max = String(state.run.latent_dim - 1);
  $("steps").max = String(state.limits.interpolation_steps);
  fillSampleChoices();

  renderGrid = coalescing("/api/render", $("grid"), exploration, (milliseconds, error, forwardMs) => {
    $("render-status").textContent = error ? `refused: ${error}` :
      `${sampleCount()} images from the server's G in ${milliseconds.toFixed(0)} ms ` +
      (forwardMs === null ? "(from the cache)" : `(G's forward: ${forwardMs.toFixed(0)} ms)`);
    $("render-status").classList.toggle("error", Boolean(error));
  });
  renderStrip = coalescing("/api/interpolate", $("strip"), () => ({...exploration(), ...pair()}), () => {});
  changed();
}

function showProtocol(state) {
  $("protocol").textContent = `Images: G of run ${state.run.id}, rendered on the server. Numbers: ` +
    (state.study ? `latent study run ${state.study.run_id}, ${state.study.samples} latent vectors each, mean ± 95% ` +
                   `CI (class changes: Wilson interval), classes as the ${state.study.classifier} classifier ` +
                   `predicts them, not a person; each number is for one move alone.` : state.study_line) +
    ` SeFa directions: ${state.direction_notes.sefa}. GANSpace directions: ${state.direction_notes.ganspace}.` +
    ` Several sliders at once: offsets are added, then set values are set.`;
}

// SeFa and GANSpace sliders; directions still being computed on the server appear when they are ready.
function addDirectionRows(state) {
  for (const family of ["sefa", "ganspace"]) {
    const shown = page.rows.filter(row => row.key.startsWith(`${family} `)).length;
    for (let index = shown; index < state.directions[family]; index++) {
      addRow(`${family}-sliders`, family, index, false);
    }
    $(`${family}-note`).textContent = state.directions[family] ? "" : `${family === "sefa" ? "SeFa" : "GANSpace"} ` +
                                                                      `directions: ${state.direction_notes[family]}`;
  }
  showProtocol(state);
  if (!state.directions_ready) {
    setTimeout(async () => {
      const latest = await (await fetch("/api/state")).json();
      Object.assign(page.state, {directions: latest.directions, direction_notes: latest.direction_notes,
                                 directions_ready: latest.directions_ready});
      addDirectionRows(page.state);
    }, 3000);
  }
}

function pair() {
  return {from: Number($("from").value), to: Number($("to").value), steps: Number($("steps").value)};
}

function wire() {
  $("seed").addEventListener("change", changed);
  $("base-kind").addEventListener("change", () => { fillSampleChoices(); changed(); });
  $("redraw").addEventListener("click", () => {
    $("base-kind").value = "seed";
    $("seed").value = String(Math.floor(Math.random() * 2 ** 31));
    fillSampleChoices();
    changed();
  });
  $("reset-all").addEventListener("click", () => { page.rows.forEach(row => row.reset()); changed(); });
  for (const id of ["from", "to"]) {
    $(id).addEventListener("change", () => { $(id).dataset.chosen = "1"; renderStrip(); });
  }
  $("steps").addEventListener("change", () => renderStrip());
  $("add-dim").addEventListener("click", () => {
    const text = $("new-dim").value, dim = Number(text), latentDim = page.state.run.latent_dim;
    const status = $("add-dim-status");
    if (text === "" || !Number.isInteger(dim) || dim < 0 || dim >= latentDim) {
      status.textContent = `dims are 0-based: 0…${latentDim - 1}`;
    } else if (page.rows.some(row => row.key === `dim ${dim}`)) {
      status.textContent = `z[${dim}] has a slider already`;
    } else {
      status.textContent = "";
      addRow("dim-sliders", "dim", dim, true);
    }
  });
  $("save").addEventListener("click", async () => {
    const status = $("save-status");
    status.textContent = "saving…";
    delete status.dataset.runId;
    const response = await fetch("/api/save", {method: "POST", headers: {"Content-Type": "application/json"},
                                               body: JSON.stringify({...exploration(), ...pair()})});
    const answer = await response.json();
    if (!response.ok) {
      status.textContent = `not saved: ${answer.error}`;
      return;
    }
    status.dataset.runId = answer.run_id;
    status.replaceChildren(`saved as run ${answer.run_id} · `, Object.assign(el("a", "", "open in MLflow"),
                                                                            {href: answer.url, target: "_blank"}));
  });
}

window.addEventListener("DOMContentLoaded", async () => {
  wire();
  const response = await fetch("/api/state");
  build(await response.json());
});
