// The page's steering of the run it watches: the prompt in effect (with a slider per weighted part, "text:weight")
// and the lr, applied with one click or Enter; pause and continue; branch from the next step. The loss curve is an
// inline SVG with a mark at each steer's step and each story keyframe; the history lists the steers as the server
// records them (each arrives once on the event stream, so a tab opened later sees them all).
"use strict";
const steering = (() => {
  const $s = (sel) => document.querySelector(sel);
  // dirty: the box was edited and not sent; pending: a change was sent and the run has not taken it yet
  const st = { job: null, steers: [], keyframes: [], first: 0, total: 0, curve: [], dirty: false, pending: false,
    lr: null, prompt: null };
  const SVG = "http://www.w3.org/2000/svg";

  // ---- the loss curve: x is the step (0 .. total-1), y the loss scaled to the box
  function draw() {
    const W = 360, H = 80, v = st.curve, last = Math.max(st.total - 1, st.first + v.length - 1, 1);
    const x = (step) => (2 + (step / last) * (W - 4)).toFixed(1);
    const lo = Math.min(...v), hi = Math.max(...v), span = hi - lo || 1;
    $s("#curve-line").setAttribute("points", v.length < 2 ? "" : v.map((y, i) =>
      `${x(st.first + i)},${(H - 4 - ((y - lo) / span) * (H - 8)).toFixed(1)}`).join(" "));
    const marks = [...st.steers.map((e) => ["steer", e.at, `step ${e.at}: ${describe(e)}`]),
      ...st.keyframes.map((at) => ["key", at, `story keyframe at step ${at}`])];
    $s("#curve-marks").replaceChildren(...marks.map(([kind, at, text]) => {
      const line = document.createElementNS(SVG, "line");
      line.setAttribute("class", kind); line.dataset.step = at;
      for (const [k, val] of [["x1", x(at)], ["x2", x(at)], ["y1", 0], ["y2", H]]) line.setAttribute(k, val);
      const title = document.createElementNS(SVG, "title"); title.textContent = text; line.append(title);
      return line;
    }));
  }
  const describe = (e) => Object.entries(e).filter(([k]) => k !== "at").map(([k, v]) => `${k} → ${v}`).join("; ");

  // ---- the weighted parts of a prompt ("a red circle:1.5|blurry:-0.5"): a slider each, writing back into the box
  const WEIGHT = /^(.*?):(-?\d*\.?\d+)((?::-?\d*\.?\d+)?(?:@.*)?)$/s;
  function sliders() {
    const parts = $s("#s-prompt").value.split("|");
    const rows = parts.map((part, i) => [part.trim().match(WEIGHT), i]).filter(([m]) => m && m[1].trim());
    $s("#s-weights").replaceChildren(...rows.map(([m, i]) => {
      const label = document.createElement("label"), out = document.createElement("span");
      const input = document.createElement("input");
      Object.assign(input, { type: "range", min: -2, max: 4, step: 0.05, value: Number(m[2]) });
      input.setAttribute("aria-label", `weight of "${m[1].trim()}"`);
      out.textContent = m[2];
      input.oninput = () => {
        const now = $s("#s-prompt").value.split("|");
        const mm = now[i] && now[i].trim().match(WEIGHT);
        if (!mm) return;
        now[i] = `${mm[1]}:${Number(input.value)}${mm[3]}`;
        $s("#s-prompt").value = now.join("|"); out.textContent = String(Number(input.value)); st.dirty = true;
      };
      label.append(m[1].trim().slice(0, 40), input, out);
      return label;
    }));
  }

  function showError(text) { $s("#s-error").textContent = text || ""; }
  function history() {
    $s("#s-history").replaceChildren(...st.steers.map((e) => {
      const li = document.createElement("li"), at = document.createElement("span");
      at.textContent = `step ${e.at}: `; li.append(at, describe(e)); return li;
    }));
  }

  async function post(what, body) {
    if (!st.job) return null;
    const res = await api("POST", `/api/jobs/${st.job}/${what}`, body);
    showError(res.ok ? "" : res.data.error);
    return res.ok ? res.data : null;
  }
  function changes(branching) {  // what the form changes (a branch names the prompt at least: it changes something)
    const out = {}, prompt = $s("#s-prompt").value.trim(), lr = $s("#s-lr").value.trim();
    if (prompt !== st.prompt || branching) out.prompt = prompt;
    if (lr !== "" && Number(lr) !== st.lr) out.lr = Number(lr);
    return out;
  }
  async function apply(ev) {
    if (ev) ev.preventDefault();
    const change = changes();
    if (!Object.keys(change).length) return showError("nothing changed: edit the prompt, a weight or the lr");
    const sent = await post("steer", change);
    if (sent) { st.dirty = false; st.pending = true; }
  }
  async function branch() {
    const child = await post("branch", { ...changes(true), stop: $s("#s-branch-stop").checked });
    if (!child) return;
    const note = $s("#s-branched"), button = document.createElement("button");
    button.type = "button"; button.textContent = `Watch ${child.id}`; button.onclick = () => watch(child.id);
    note.replaceChildren(`branch ${child.id} ${child.state}: it goes on from the next step `, button);
    note.dataset.child = child.id;
    refreshQueue();
  }

  // ---- app.js's hooks: a new job watched, each event of its stream
  function watching(id) {
    Object.assign(st, { job: id, steers: [], keyframes: [], first: 0, total: 0, curve: [], dirty: false,
      pending: false, lr: null, prompt: null });
    $s("#steer").hidden = true; $s("#s-branched").replaceChildren(); showError(""); history(); draw();
  }
  function event(e) {
    if (e.steer) { st.steers.push(e.steer); st.pending = false; history(); draw(); return; }
    const ended = ["done", "stopped", "failed", "cancelled"].includes(e.state);
    $s("#steer").hidden = !e.steerable || ended;
    st.total = e.total || st.total; st.keyframes = e.keyframes || [];
    if (e.first_step != null) st.first = e.first_step;
    if (e.curve && e.curve.length) { st.curve.length = e.curve_from; st.curve.push(...e.curve); }
    st.prompt = e.prompt_now;
    const keep = st.dirty || st.pending;  // what the user typed or sent stays until the run has taken it
    if (!keep && document.activeElement !== $s("#s-prompt") && $s("#s-prompt").value !== e.prompt_now) {
      $s("#s-prompt").value = e.prompt_now || ""; sliders();
    }
    if (!keep && e.lr_now != null && e.lr_now !== st.lr && document.activeElement !== $s("#s-lr")) {
      st.lr = e.lr_now; $s("#s-lr").value = e.lr_now;
    }
    $s("#s-pause").textContent = e.paused ? "Continue" : "Pause";
    $s("#s-pause").dataset.paused = e.paused ? "1" : "";
    draw();
  }
  function init() {
    $s("#steer").onsubmit = apply;
    $s("#s-prompt").addEventListener("keydown", (ev) => {  // Enter applies; Shift+Enter is a new line
      if (ev.key === "Enter" && !ev.shiftKey) apply(ev);
    });
    $s("#s-prompt").addEventListener("input", () => { st.dirty = true; sliders(); });
    $s("#s-lr").addEventListener("input", () => { st.dirty = true; });
    $s("#s-pause").onclick = () => post($s("#s-pause").dataset.paused ? "resume" : "pause");
    $s("#s-branch").onclick = branch;
  }
  return { init, watching, event, draw };
})();
