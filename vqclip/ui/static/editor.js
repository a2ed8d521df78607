// The page's image editor: paint the mask of an edit (white = may change) over the init image with a brush, drag
// the canvas's borders to extend it (outpainting), and compare the result with the image it started from.
// It drives the job through the form: the mask is uploaded as a PNG when the job is sent (`init.mask`), the border
// drags write the `extend` field, so a job made here is the same job a YAML file or the command line would give.
"use strict";
const editor = (() => {
  const $e = (sel) => document.querySelector(sel);
  const ed = { image: null, url: null, painting: false, last: null, dirty: false, extend: [0, 0, 0, 0], blank: false };
  // the layers painted on: the edit's mask, and up to three regions, each pulled by its own prompt
  const LAYERS = { mask: [64, 224, 255], r1: [255, 214, 10], r2: [255, 64, 200], r3: [120, 255, 80] };
  const layer = () => $e("#ed-layer").value;
  const canvasOf = (name) => $e(name === "mask" ? "#ed-mask" : `#ed-${name}`);
  const allCanvases = () => [$e("#ed-image"), ...Object.keys(LAYERS).map(canvasOf)];

  // ---- the option keys the editor drives, found by name in /api/options so that the page follows the config
  const keyOf = (re) => (state.options.find((o) => re.test(o.key)) || {}).key;
  const maskKey = () => keyOf(/^init\.mask$/);
  const extendKey = () => keyOf(/(^|\.)extend$/);

  // ---- the brush: stamps of a radial profile (hardness = the share of the radius at full strength)
  function stamp(g, x, y, size, hardness, erase, rgb) {
    const r = Math.max(size / 2, 0.5), grad = g.createRadialGradient(x, y, r * Math.min(hardness, 0.999), x, y, r);
    grad.addColorStop(0, `rgba(${rgb},1)`); grad.addColorStop(1, `rgba(${rgb},0)`);
    g.globalCompositeOperation = erase ? "destination-out" : "source-over";
    g.fillStyle = grad; g.beginPath(); g.arc(x, y, r, 0, 2 * Math.PI); g.fill();
  }
  function stroke(from, to) {  // stamps every quarter brush along the segment, so a fast drag leaves no gaps
    const g = canvasOf(layer()).getContext("2d"), rgb = LAYERS[layer()].join(",");
    const size = Number($e("#ed-size").value), hardness = Number($e("#ed-hardness").value) / 100;
    const erase = $e("#ed-erase").checked, step = Math.max(size / 4, 0.5);
    const n = Math.max(1, Math.ceil(Math.hypot(to.x - from.x, to.y - from.y) / step));
    for (let i = from === to ? 0 : 1; i <= n; i++) {
      stamp(g, from.x + (to.x - from.x) * i / n, from.y + (to.y - from.y) * i / n, size, hardness, erase, rgb);
    }
    ed.dirty = true;  // the info line is redrawn when the stroke ends (it reads the whole mask back)
  }
  function point(ev) {  // the pointer in image pixels
    const c = $e("#ed-mask"), box = c.getBoundingClientRect();
    return { x: (ev.clientX - box.left) * c.width / box.width, y: (ev.clientY - box.top) * c.height / box.height };
  }

  // ---- the mask as the job takes it: grey levels from the painted strength, black where nothing is painted
  function maskCanvas(src = $e("#ed-mask")) {
    const out = document.createElement("canvas");
    out.width = src.width; out.height = src.height;
    const data = src.getContext("2d").getImageData(0, 0, src.width, src.height), px = data.data;
    let any = false;
    for (let i = 0; i < px.length; i += 4) {
      const a = px[i + 3]; px[i] = px[i + 1] = px[i + 2] = a; px[i + 3] = 255; any = any || a > 0;
    }
    out.getContext("2d").putImageData(data, 0, 0);
    return any ? out : null;
  }
  function painted() { return ed.image !== null && maskCanvas() !== null; }

  // ---- extending the canvas by dragging a border (image pixels, multiples of 8)
  function setExtend(values) {
    ed.extend = values.map((v) => Math.max(0, Math.round(v / 8) * 8));
    const key = extendKey(), input = key && document.querySelector(`#form [data-key="${key}"]`);
    if (input) input.value = ed.extend.join(",");
    layout();
  }
  function layout() {  // the stage: the image at its place inside the extended canvas, scaled to the panel
    if (!ed.image) return;
    const [l, t, r, b] = ed.extend, w = ed.image.width + l + r, h = ed.image.height + t + b;
    // whole screen pixels per image pixel, kept while a border is dragged so the drag follows the pointer
    const scale = ed.dragScale || Math.min(1, 360 / w) * Math.max(1, Math.floor(256 / Math.max(w, h)));
    const stage = $e("#ed-stage");
    stage.style.width = `${w * scale}px`; stage.style.height = `${h * scale}px`;
    for (const c of allCanvases()) {
      Object.assign(c.style, { left: `${l * scale}px`, top: `${t * scale}px`, width: `${ed.image.width * scale}px`,
        height: `${ed.image.height * scale}px` });
    }
    ed.scale = scale;
    showState();
  }
  function dragBorder(side) {  // side: 0 left, 1 top, 2 right, 3 bottom
    return (ev) => {
      ev.preventDefault();
      const start = { x: ev.clientX, y: ev.clientY, extend: [...ed.extend] };
      ed.dragScale = ed.scale;
      const move = (e) => {
        const d = side % 2 === 0 ? e.clientX - start.x : e.clientY - start.y;
        const values = [...start.extend]; values[side] = start.extend[side] + (side < 2 ? -d : d) / ed.dragScale;
        setExtend(values);
      };
      const up = () => {
        window.removeEventListener("pointermove", move); window.removeEventListener("pointerup", up);
        ed.dragScale = null; layout();
      };
      window.addEventListener("pointermove", move); window.addEventListener("pointerup", up);
    };
  }

  function showState() {
    const [l, t, r, b] = ed.extend;
    $e("#ed-empty").hidden = !!ed.image; $e("#ed-tools").hidden = !ed.image; $e("#ed-blank").hidden = !!ed.image;
    if (!ed.image) return;
    const extended = l + t + r + b > 0, mask = ed.dirty && !ed.blank && painted();
    $e("#ed-info").textContent = `${ed.image.width}x${ed.image.height}`
      + (extended ? ` → ${ed.image.width + l + r}x${ed.image.height + t + b} (extend ${l} ${t} ${r} ${b})` : "")
      + (mask ? " · mask painted" : extended || ed.blank ? "" : " · paint where the image may change")
      + (ed.blank ? " · a blank canvas: paint regions and give each its prompt" : "");
  }

  // ---- the image to edit: the init image field's upload, or a run's final.png from the gallery
  function load(url, maskUrl = null) {
    ed.pendingMask = maskUrl || ed.pendingMask; ed.blank = false;
    const img = new Image();
    img.onload = () => {
      ed.image = img; ed.url = ed.blank ? null : url; ed.dirty = false;
      for (const c of allCanvases()) { c.width = img.width; c.height = img.height; }
      $e("#ed-image").getContext("2d").drawImage(img, 0, 0);
      if (ed.pendingMask) paintMask(ed.pendingMask);
      ed.pendingMask = null;
      $e("#editor-box").open = true;
      setExtend([0, 0, 0, 0]);
    };
    img.src = url;
  }
  function paintMask(url) {  // a saved mask (white = may change) back onto the canvas, e.g. "Edit and run again"
    const m = new Image();
    m.onload = () => {
      const c = $e("#ed-mask"), tmp = document.createElement("canvas");
      tmp.width = c.width; tmp.height = c.height;
      const g = tmp.getContext("2d"); g.drawImage(m, 0, 0, c.width, c.height);
      const data = g.getImageData(0, 0, c.width, c.height), px = data.data;
      for (let i = 0; i < px.length; i += 4) { px[i + 3] = px[i]; px[i] = 64; px[i + 1] = 224; px[i + 2] = 255; }
      c.getContext("2d").putImageData(data, 0, 0);
      ed.dirty = true; showState();
    };
    m.src = url;
  }
  function blank() {  // a canvas of the form's size to paint regions on, with no image to edit
    const w = Number($e("#f-size-w").value) || 256, h = Number($e("#f-size-h").value) || 256, c = document.createElement("canvas");
    c.width = w; c.height = h;
    const g = c.getContext("2d"); g.fillStyle = "#303238"; g.fillRect(0, 0, w, h);
    load(c.toDataURL()); ed.blank = true;
  }
  function forget() {
    ed.image = null; ed.url = null; ed.dirty = false; setExtend([0, 0, 0, 0]); showState();
  }
  async function editRun(run) {  // a run's final.png becomes the init image (uploaded, as any init image is)
    const blob = await (await fetch(run.final)).blob();
    const res = await uploadBlob(blob, "final.png");
    if (!res.ok) { showError({ error: res.data.error, field: "init.image" }); return; }
    state.uploads["init.image"] = res.data.id;
    $e("#f-size-w").value = res.data.width; $e("#f-size-h").value = res.data.height;
    load(res.data.url);
    location.hash = "#make";
  }
  async function uploadBlob(blob, name) {
    const form = new FormData(); form.append("file", blob, name);
    return api("POST", "/api/uploads", form);
  }

  // ---- when the job is sent: the painted mask as an upload (nothing painted: no mask, as before)
  async function beforeSubmit(job) {
    if (ed.image && !(await sendRegions(job))) return false;
    const key = maskKey();
    if (!key || !ed.image || ed.blank) return true;
    const canvas = maskCanvas();  // the editor owns the mask while it shows an image: what is painted now is sent
    if (!canvas) { delete state.uploads[key]; setKey(job, key, null); return true; }
    const blob = await new Promise((done) => canvas.toBlob(done, "image/png"));
    const res = await uploadBlob(blob, "mask.png");
    if (!res.ok) { showError({ error: res.data.error, field: key }); return false; }
    state.uploads[key] = res.data.id; setKey(job, key, res.data.id);
    return true;
  }

  // ---- the regions: each painted layer with a prompt becomes {text, mask: upload:ID} in the job's prompt list
  async function sendRegions(job) {
    const items = [];
    for (const name of ["r1", "r2", "r3"]) {
      const text = $e(`#ed-${name}-text`).value.trim(), canvas = maskCanvas(canvasOf(name));
      if (!text || !canvas) continue;
      const blob = await new Promise((done) => canvas.toBlob(done, "image/png"));
      const res = await uploadBlob(blob, `region-${name}.png`);
      if (!res.ok) { showError({ error: res.data.error, field: "prompt" }); return false; }
      items.push({ text, mask: res.data.id });
    }
    if (items.length) job.prompt = [...(job.prompt ? [job.prompt] : []), ...items];
    return true;
  }

  // ---- before and after: the init image over the result, cut at the slider
  function compare(beforeUrl, afterUrl) {
    const box = $e("#compare");
    if (!beforeUrl || !afterUrl) { box.hidden = true; return; }
    $e("#cmp-before").src = beforeUrl; $e("#cmp-after").src = afterUrl; box.hidden = false;
    $e("#cmp-slider").oninput();
  }

  function init() {
    const mask = $e("#ed-mask");
    mask.style.touchAction = "none";  // a finger paints instead of scrolling the page
    mask.addEventListener("pointerdown", (ev) => {
      ev.preventDefault();
      try { mask.setPointerCapture(ev.pointerId); } catch (e) { /* the pointer is gone already: paint anyway */ }
      ed.painting = true; ed.last = point(ev); stroke(ed.last, ed.last);
    });
    mask.addEventListener("pointermove", (ev) => {
      if (!ed.painting) return;
      const p = point(ev); stroke(ed.last, p); ed.last = p;
    });
    for (const t of ["pointerup", "pointercancel"]) mask.addEventListener(t, () => { ed.painting = false; showState(); });
    $e("#ed-clear").onclick = () => {
      const c = canvasOf(layer()); c.getContext("2d").clearRect(0, 0, c.width, c.height);
      if (layer() === "mask") ed.dirty = false;
      showState();
    };
    $e("#ed-all").onclick = () => {
      const c = canvasOf(layer()), g = c.getContext("2d"); g.globalCompositeOperation = "source-over";
      g.fillStyle = `rgba(${LAYERS[layer()].join(",")},1)`; g.fillRect(0, 0, c.width, c.height); ed.dirty = true; showState();
    };
    $e("#ed-blank").onclick = blank;
    document.querySelectorAll(".ed-handle").forEach((h) => h.addEventListener("pointerdown", dragBorder(Number(h.dataset.side))));
    $e("#ed-size").oninput = () => { $e("#ed-size-v").textContent = $e("#ed-size").value; };
    $e("#ed-hardness").oninput = () => { $e("#ed-hardness-v").textContent = `${$e("#ed-hardness").value}%`; };
    $e("#cmp-slider").oninput = () => {
      $e("#cmp-before").style.clipPath = `inset(0 ${100 - Number($e("#cmp-slider").value)}% 0 0)`;
    };
    showState();
  }
  function showMask(url) {  // a mask uploaded with its own button: painted now, or once the image is there
    if (ed.image) paintMask(url); else ed.pendingMask = url;
  }
  return { init, load, forget, editRun, beforeSubmit, compare, painted, showMask, get url() { return ed.url; } };
})();
