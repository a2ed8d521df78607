// vqclip's page: the form is made from /api/options and /api/presets; runs are watched through server-sent events.
"use strict";
const $ = (sel) => document.querySelector(sel);
const state = { options: [], presets: {}, preset: null, extra: {}, watching: null, source: null,
  uploads: {}, detail: null, before: {}, drawer: null, galleryAsked: 0 };

async function api(method, url, body) {
  const init = { method, headers: {} };
  if (body instanceof FormData) init.body = body;
  else if (body !== undefined) { init.body = JSON.stringify(body); init.headers["Content-Type"] = "application/json"; }
  const res = await fetch(url, init);
  let data = null;
  try { data = await res.json(); } catch (e) { data = { error: `${res.status} ${res.statusText}` }; }
  return { ok: res.ok, status: res.status, data };
}

// ---- nested job keys <-> dotted keys
function setKey(obj, key, value) {
  const parts = key.split("."); let node = obj;
  for (const p of parts.slice(0, -1)) node = (node[p] = node[p] && typeof node[p] === "object" ? node[p] : {});
  node[parts[parts.length - 1]] = value;
}
function flat(obj, prefix = "", out = {}) {
  for (const [k, v] of Object.entries(obj || {})) {
    if (v && typeof v === "object" && !Array.isArray(v)) flat(v, `${prefix}${k}.`, out); else out[prefix + k] = v;
  }
  return out;
}
// an upload's image, where the page shows it ("upload:ID" -> its URL); null for anything else
const uploadUrl = (id) => (typeof id === "string" && /^upload:[0-9a-f]{32}$/.test(id) ? `/files/.uploads/${id.slice(7)}.png` : null);
const same = (a, b) => JSON.stringify(a ?? null) === JSON.stringify(b ?? null);

// ---- the form
function fieldId(key) { return "f-" + key.replace(/[.\[\]]/g, "-"); }
function makeField(opt) {
  const wrap = document.createElement("div");
  const label = document.createElement("label");
  label.htmlFor = fieldId(opt.key); label.textContent = opt.label;
  label.title = `${opt.key} in a job YAML`;
  let input;
  if (opt.upload) {  // a key that names an image: an upload button; the job gets the upload's id (upload:ID)
    input = document.createElement("input"); input.type = "file"; input.accept = "image/*";
    input.dataset.upload = opt.key;
  } else if (opt.type === "bool") { input = document.createElement("input"); input.type = "checkbox"; }
  else if (opt.choices && opt.type !== "list") {
    input = document.createElement("select");
    for (const c of opt.choices) { const o = document.createElement("option"); o.value = o.textContent = c; input.append(o); }
  } else {
    input = document.createElement("input");
    input.type = opt.type === "int" || opt.type === "float" ? "number" : "text";
    if (input.type === "number") input.step = opt.type === "int" ? "1" : "any";
  }
  input.id = fieldId(opt.key);
  if (!opt.upload) { input.dataset.key = opt.key; input.dataset.type = opt.type; }
  if (opt.items) input.dataset.items = opt.items;
  const help = document.createElement("div"); help.className = "help"; help.textContent = opt.help;
  const err = document.createElement("div"); err.className = "err"; err.dataset.for = opt.key;
  wrap.append(label, input, help, err);
  return wrap;
}
const SPECIAL = new Set(["prompt", "negative", "image_prompts", "init.image", "model", "size"]);

function defaults() {  // the option defaults under the chosen preset's, under the image model's own (as the server)
  const out = {};
  for (const o of state.options) out[o.key] = o.default;
  const p = state.presets[$("#f-model").value];
  if (p) Object.assign(out, flat(p.defaults));
  const own = { ...(((p && p.drawers) || {})[state.drawer || out["drawer.name"]] || {}) };
  const mode = (key) => (document.querySelector(`#form [data-key="${key}"]`) || {}).value;
  if (mode("animation.mode") === "zoom" || ["zoom", "restyle"].includes(mode("mode"))) delete own.steps;  // a video's length
  Object.assign(out, flat(own));
  return out;
}
function drawerChanged(input) {  // fields still showing the old image model's defaults show the new one's
  const before = defaults();
  state.drawer = input.value;
  const after = defaults();
  for (const field of document.querySelectorAll("#form [data-type]")) {
    const key = field.dataset.key;
    if (key !== "drawer.name" && !same(before[key], after[key]) && same(readValue(field), before[key])) {
      showValue(field, after[key]);
    }
  }
}
function showValue(input, value) {
  const t = input.dataset.type;
  if (t === "bool") input.checked = !!value;
  else if (t === "list") input.value = value == null ? "" : (Array.isArray(value) ? value.join(",") : String(value));
  else if (value !== null && typeof value === "object") input.value = JSON.stringify(value);
  else input.value = value == null ? "" : String(value);
}
function readValue(input) {
  const t = input.dataset.type, raw = input.value.trim();
  if (t === "bool") return input.checked;
  if (raw === "") return null;
  if (t === "int" || t === "float") return Number(raw);
  if (t === "list") {
    const items = raw.split(",").map((s) => s.trim()).filter((s) => s);
    return ["int", "float"].includes(input.dataset.items) ? items.map(Number) : items;
  }
  if (t === "any") { const n = Number(raw); return Number.isFinite(n) ? n : raw; }
  return raw;
}
function fillForm(job) {  // preset defaults, then the job's keys
  const given = flat(job || {});
  state.drawer = given["drawer.name"] || null;
  const values = defaults();
  if (given.model && state.presets[given.model]) { $("#f-model").value = given.model; Object.assign(values, defaults()); }
  Object.assign(values, given);
  state.extra = {};
  for (const [k, v] of Object.entries(given)) {
    if (!SPECIAL.has(k) && !document.querySelector(`[data-key="${k}"], [data-upload="${k}"]`) && k !== "story") {
      state.extra[k] = v;
    }
  }
  for (const input of document.querySelectorAll("#form [data-type]")) showValue(input, values[input.dataset.key]);
  $("#f-prompt").value = values.prompt || "";
  $("#f-negative").value = (values.negative || []).join("\n");
  const size = values.size || [256, 256];
  $("#f-size-w").value = size[0]; $("#f-size-h").value = size[1];
  $("#f-story").value = (given.story || []).map((k) => `${k.at}: ${k.prompt}`).join("\n");
  state.uploads = {};  // the job's images (init image, image prompts, palette image ...): kept as they were given
  for (const o of state.options) {
    const v = given[o.key];
    if (o.upload && v && !(Array.isArray(v) && !v.length)) state.uploads[o.key] = v;
  }
  if (state.uploads["init.image"]) editor.load(uploadUrl(state.uploads["init.image"]), uploadUrl(state.uploads["init.mask"]));
  else editor.forget();
  clearErrors();
}
function readForm() {  // only what differs from the preset's defaults, so the preset fills in the rest
  const job = {}, base = defaults();
  job.prompt = $("#f-prompt").value.trim();
  const negative = $("#f-negative").value.split("\n").map((s) => s.trim()).filter((s) => s);
  if (negative.length) job.negative = negative;
  job.model = $("#f-model").value;
  const size = [Number($("#f-size-w").value), Number($("#f-size-h").value)];
  if (!same(size, base.size)) job.size = size;
  for (const input of document.querySelectorAll("#form [data-type]")) {
    const key = input.dataset.key, raw = readValue(input);
    // an emptied list field whose default is a list (palette colours, symmetry axes) is that empty list, not null
    const value = raw === null && Array.isArray(base[key]) ? [] : raw;
    if (!same(value, base[key]) && !(value === null && base[key] === undefined)) setKey(job, key, value);
  }
  const story = $("#f-story").value.split("\n").map((l) => l.match(/^\s*(\d+)\s*:\s*(.+)$/)).filter((m) => m);
  if (story.length) job.story = story.map((m) => ({ at: Number(m[1]), prompt: m[2].trim() }));
  for (const [k, v] of Object.entries(state.extra)) setKey(job, k, v);
  for (const [k, v] of Object.entries(state.uploads)) setKey(job, k, v);
  return job;
}
function clearErrors() { for (const e of document.querySelectorAll(".err")) e.textContent = ""; }
function showError(data) {
  clearErrors();
  const message = data.error || "the server refused the job";
  const target = data.field && document.querySelector(`.err[data-for="${data.field}"]`);
  (target || $("#form-error")).textContent = message;
  if (target) target.scrollIntoView({ block: "nearest" });
}

async function submit(body) {
  const res = await api("POST", "/api/jobs", body);
  if (!res.ok) { showError(res.data); return null; }
  clearErrors();
  state.before[res.data.id] = body.job && body.job.init && body.job.init.image ? editor.url : null;
  watch(res.data.id);
  refreshQueue();
  return res.data;
}

async function upload(input) {
  const key = input.dataset.upload, file = input.files[0];
  if (!file) { delete state.uploads[key]; if (key === "init.image") editor.forget(); return; }
  const form = new FormData(); form.append("file", file);
  const res = await api("POST", "/api/uploads", form);
  const err = document.querySelector(`.err[data-for="${key}"]`);
  if (!res.ok) { err.textContent = res.data.error; input.value = ""; delete state.uploads[key]; return; }
  err.textContent = "";
  state.uploads[key] = key === "image_prompts" ? [res.data.id] : res.data.id;
  if (key === "init.image") editor.load(res.data.url, uploadUrl(state.uploads["init.mask"]));
  if (key === "init.mask") editor.showMask(res.data.url);  // an uploaded mask shows on the image, and can be painted on
}

// ---- watch
function fmtTime(s) {
  if (s == null || !isFinite(s)) return "–";
  s = Math.round(s); return s >= 60 ? `${Math.floor(s / 60)} min ${s % 60} s` : `${s} s`;
}
function watch(id) {
  if (state.source) state.source.close();
  state.watching = id; steering.watching(id);
  $("#w-job").textContent = id; $("#result").hidden = true; $("#stop").disabled = false;
  for (const k of ["#w-step", "#w-total"]) $(k).textContent = "0";
  for (const k of ["#w-loss", "#w-rate", "#w-eta"]) $(k).textContent = "–";
  $("#w-state").textContent = "queued"; $("#w-notes").replaceChildren();
  $("#preview").hidden = true; $("#w-empty").hidden = false; $("#w-empty").textContent = "waiting for its turn…";
  const es = new EventSource(`/api/jobs/${id}/events`);
  state.source = es;
  es.onmessage = (msg) => {
    const e = JSON.parse(msg.data);
    steering.event(e);  // a steer taken (its own message), or the run's steering state, curve and marks
    if (e.steer) return;
    $("#w-state").textContent = e.state === "queued" ? `queued (${e.position} ahead)`
      : e.state + (e.state === "running" && e.trial ? ` (best of ${e.trial} starts)` : "");
    $("#w-step").textContent = e.step; $("#w-total").textContent = e.total;
    $("#w-loss").textContent = e.loss == null ? "–" : e.loss.toFixed(4);
    $("#w-rate").textContent = e.rate == null ? "–" : e.rate.toFixed(2);
    $("#w-eta").textContent = fmtTime(e.eta);
    if (e.notes && e.notes.length !== $("#w-notes").children.length) {  // what the run said, as a terminal shows it
      $("#w-notes").replaceChildren(...e.notes.map((n) => { const li = document.createElement("li"); li.textContent = n; return li; }));
    }
    if (e.preview) {
      const img = $("#preview"); img.src = e.preview; img.dataset.step = e.preview_step;
      img.hidden = false; $("#w-empty").hidden = true;
    }
    if (["done", "stopped", "failed", "cancelled"].includes(e.state)) {
      es.close(); state.source = null; $("#stop").disabled = true;
      if (e.state === "failed") $("#w-empty").textContent = e.error, $("#w-empty").hidden = false;
      if (e.state === "cancelled") $("#w-empty").textContent = "cancelled", $("#w-empty").hidden = false;
      if (e.files) showResult(e.files);
      refreshQueue(); refreshGallery();
    }
  };
}
function links(files) {
  return ["final", "video", "grid", "job"].filter((k) => files[k])
    .map((k) => `<a href="${files[k]}" download>${k === "job" ? "job.yaml" : files[k].split("/").pop()}</a>`).join("")
    + ["report", "ranking"].filter((k) => files[k]).map((k) => `<a href="${files[k]}" target="_blank">${files[k].split("/").pop()}</a>`).join("");
}
function showResult(files) {
  $("#result").hidden = false;
  const img = $("#final"), t = Date.now();
  if (files.final || files.grid) img.src = `${files.final || files.grid}?t=${t}`;
  const video = $("#video");
  if (files.video) { video.src = `${files.video}?t=${t}`; video.hidden = false; } else video.hidden = true;
  $("#downloads").innerHTML = links(files);
  editor.compare(state.before[state.watching], files.final && `${files.final}?t=${t}`);
}
$("#stop").onclick = async () => {
  if (!state.watching) return;
  $("#stop").disabled = true;
  await api("DELETE", `/api/jobs/${state.watching}`);
};

// ---- queue
async function refreshQueue() {
  const res = await api("GET", "/api/jobs");
  if (!res.ok) return;
  const rows = res.data.slice(-30).reverse().map((j) => {
    const tr = document.createElement("tr"); tr.dataset.job = j.id;
    const place = j.state === "queued" ? `${j.position + 1}` : "";
    tr.innerHTML = `<td>${j.id}</td><td class="p"></td><td>${j.state}</td><td>${place}</td><td></td>`;
    tr.children[1].textContent = j.parent ? `${j.prompt} (a branch of ${j.parent})` : j.prompt;
    const act = tr.children[4];
    if (j.state === "queued" || j.state === "running") {
      const b = document.createElement("button"); b.textContent = j.state === "queued" ? "Cancel" : "Stop";
      b.className = "cancel"; b.onclick = () => api("DELETE", `/api/jobs/${j.id}`).then(refreshQueue); act.append(b);
    }
    const w = document.createElement("button"); w.textContent = "Watch"; w.onclick = () => watch(j.id); act.append(w);
    return tr;
  });
  $("#queue-rows").replaceChildren(...rows);
}

// ---- browse
function card(run) {
  const div = document.createElement("div"); div.className = "card"; div.dataset.name = run.name;
  const img = document.createElement("img"); img.alt = run.prompt || run.name; img.loading = "lazy";
  if (run.thumb) img.src = `${run.thumb}?t=${Math.round(run.date)}`;
  const p = document.createElement("div"); p.className = "p"; p.textContent = run.prompt || run.name;
  const m = document.createElement("div"); m.className = "m";
  const when = new Date(run.date * 1000).toLocaleString();
  m.textContent = run.kind === "batch" ? `batch · ${(run.runs || []).length} runs · ${when}`
    : `seed ${run.seed ?? "?"} · ${run.steps ?? "?"} steps${run.stopped ? " (stopped)" : ""}${run.running ? " · running" : ""} · ${when}`;
  if (run.parent) m.textContent = `branched at step ${run.branch_step ?? "?"} · ${m.textContent}`;
  div.append(img, p, m);
  div.onclick = (ev) => { ev.stopPropagation(); openRun(run); };
  div.tabIndex = 0; div.setAttribute("role", "button");  // keyboard: Tab to a card, Enter opens it
  div.onkeydown = (ev) => { if (ev.key === "Enter" && ev.target === div) openRun(run); };
  if (run.branches && run.branches.length) {  // a run's branches, under it
    const under = document.createElement("div"); under.className = "branches";
    under.setAttribute("aria-label", "branches of this run"); under.append(...run.branches.map(card)); div.append(under);
  }
  return div;
}
async function refreshGallery() {  // the newest answer wins; the card that had the keyboard keeps it
  const asked = ++state.galleryAsked;
  const res = await api("GET", "/api/runs");
  if (!res.ok || asked !== state.galleryAsked) return;  // a later refresh is on its way: this answer is older
  const had = document.activeElement?.closest("#gallery .card");  // activeElement: an element (body when none), or null
  $("#gallery").replaceChildren(...res.data.map(card));
  if (had) { const again = $(`#gallery .card[data-name="${CSS.escape(had.dataset.name)}"]`); if (again) again.focus(); }
}
async function openRun(run) {
  const d = $("#detail"); d.hidden = false;
  $("#d-name").textContent = run.name;
  $("#d-image").src = run.thumb ? `${run.thumb}?t=${Math.round(run.date)}` : "";
  const video = $("#d-video");
  if (run.video) { video.src = run.video; video.hidden = false; } else { video.hidden = true; video.removeAttribute("src"); }
  $("#d-links").innerHTML = links(run);
  $("#d-plots").replaceChildren(...(run.plots || []).map((src) => Object.assign(document.createElement("img"),
    { src: `${src}?t=${Math.round(run.date)}`, alt: src.split("/").pop(), className: "plot" })));
  $("#d-runs").replaceChildren(...(run.runs || []).map(card));
  state.detail = null; $("#d-edit").disabled = run.kind === "batch";
  $("#d-paint").disabled = !run.final; $("#d-paint").onclick = () => editor.editRun(run);
  $("#d-job").textContent = run.kind === "batch" ? "a batch: open one of its runs" : "…";
  if (run.kind === "batch") return;
  const res = await api("GET", `/api/runs/${run.name}`);
  if (!res.ok) { $("#d-job").textContent = res.data.error; return; }
  state.detail = res.data;
  $("#d-job").textContent = JSON.stringify(res.data.job, null, 2) +
    (res.data.dropped.length ? `\n(not carried over: ${res.data.dropped.join(", ")} - files that are no uploads)` : "");
}
$("#d-edit").onclick = () => { if (state.detail) { fillForm(state.detail.job); location.hash = "#make"; $("#f-prompt").focus(); } };
$("#d-close").onclick = () => { $("#detail").hidden = true; };
$("#refresh").onclick = refreshGallery;

// ---- YAML
$("#f-yaml-file").onchange = async (ev) => { const f = ev.target.files[0]; if (f) $("#f-yaml").value = await f.text(); };
$("#yaml-check").onclick = async () => {
  const res = await api("POST", "/api/jobs", { yaml: $("#f-yaml").value, check: true });
  if (!res.ok) showError({ ...res.data, field: "yaml" });  // shown in the YAML box, whichever key it is about
  else { clearErrors(); document.querySelector('.err[data-for="yaml"]').textContent = "✓ a valid job"; }
};
$("#yaml-run").onclick = async () => {
  const res = await api("POST", "/api/jobs", { yaml: $("#f-yaml").value });
  if (!res.ok) showError({ ...res.data, field: "yaml" }); else { clearErrors(); watch(res.data.id); refreshQueue(); }
};

// ---- start
async function start() {
  const [opts, presets] = await Promise.all([api("GET", "/api/options"), api("GET", "/api/presets")]);
  state.options = opts.data;
  const select = $("#f-model");
  for (const p of presets.data.presets) {
    state.presets[p.name] = p;
    const o = document.createElement("option"); o.value = p.name;
    o.textContent = `${p.name} (${p.state})`; o.title = p.description; select.append(o);
  }
  select.value = presets.data.default;
  for (const opt of state.options) {
    if (SPECIAL.has(opt.key)) continue;
    (opt.main ? $("#main-options") : $("#advanced-options")).append(makeField(opt));
  }
  select.onchange = () => fillForm({ prompt: $("#f-prompt").value, model: select.value,
    negative: $("#f-negative").value.split("\n").filter((s) => s.trim()) });
  fillForm({});
  const drawer = document.querySelector('#form [data-key="drawer.name"]');
  if (drawer) drawer.addEventListener("change", () => drawerChanged(drawer));
  for (const input of document.querySelectorAll("[data-upload]")) input.onchange = () => upload(input);
  $("#form").onsubmit = async (ev) => {
    ev.preventDefault();
    const job = readForm();
    if (await editor.beforeSubmit(job)) submit({ job });
  };
  editor.init(); steering.init();
  $("#reset").onclick = () => fillForm({});
  refreshQueue(); refreshGallery();
  setInterval(refreshQueue, 2000);
  document.body.dataset.ready = "1";
}
start();
