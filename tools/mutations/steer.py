"""Mutations of steering (issue 39 items 1-3): the steer checks, the live Steering wheel (queue, pause, the end of the
run), the loop's side (when a change takes effect, the prompt rebuild, the lr), the pipeline's record in job.yaml
and state.pt, and the Python API."""

from ._table import M

STEER, LOOP, STILL = "vqclip/optim/steer.py", "vqclip/optim/loop.py", "vqclip/modes/still.py"
PIPE, API = "vqclip/runs/pipeline.py", "vqclip/api.py"
T, T_API = ("tests/test_steer.py",), ("tests/test_steer_api.py",)

MUTATIONS = [
    # --- checks of a steer and of a job's steer: list
    M("an unknown key in a steer is taken silently", STEER, "        if key not in STEER_KEYS:\n",
      "        if False:\n", T),
    M("a steer of lr 0 accepted (the run stops moving)", STEER, "or not math.isfinite(lr) or lr <= 0:",
      "or not math.isfinite(lr) or lr < 0:", T),
    M("a steered prompt with nothing to aim at accepted", STEER,
      '        check_has_target(parse_job_prompts(out["prompt"], list(negative), list(images)))\n',
      '        parse_job_prompts(out["prompt"], list(negative), list(images))\n', T),
    M("a steer: entry at the last step + 1 accepted (it never takes effect)", STEER, "if not 0 <= e.at < steps:",
      "if not 0 <= e.at <= steps:", T),
    M("steer: entries out of order accepted", STEER, "        if e.at < last:\n", "        if e.at < 0:\n", T),
    M("two steers at one step refused (two tabs steering at once)", STEER, "        if e.at < last:\n",
      "        if e.at <= last and i:\n", T),
    M("a steered prompt in a story accepted (the story's keyframes fight it)", "vqclip/config/checks.py",
      "    if keyframes and any(e.prompt for e in cfg.steer):\n", "    if False:\n", T),
    M("a restyle's steer: list accepted and never applied", "vqclip/modes/rules.py", "        if cfg.steer:\n",
      "        if False:\n", T),
    M("a live steer of a restyle accepted and never applied", PIPE,
      "    if steering is not None and not kind.steerable:",
      "    if False:", T),
    # --- the live wheel
    M("a full queue drops the oldest steer silently", STEER,
      "            if len(self._queue) >= self.size:\n                raise",
      "            if len(self._queue) >= self.size:\n                self._queue.popleft()\n            if False:\n"
      "                raise", T),
    M("the queue refuses one steer early", STEER, "if len(self._queue) >= self.size:",
      "if len(self._queue) >= self.size - 1:", T),
    M("a steer to a finished run is taken silently", STEER,
      '    def _refuse_when_finished(self, what: str) -> None:\n        if self._finished:',
      '    def _refuse_when_finished(self, what: str) -> None:\n        if False:', T),
    M("steers left waiting at the end of the run are dropped silently", STEER, "        if left:\n",
      "        if False:\n", T),
    M("pause does not hold the run", STEER, "            self._go.clear()\n", "            pass\n", T),
    M("the steers taken are taken again at the next step", STEER,
      "            self._queue.clear()\n            return out", "            return out", T),
    M("the run is never finished: a later steer is accepted and lost", PIPE,
      "            if steering is not None:\n                steering.finish()", "            pass", T),
    # --- the loop's side
    M("a change takes effect one step late", STEER, 'self.entries += [{"at": step, **change} for change in taken]',
      'self.entries += [{"at": step + 1, **change} for change in taken]', T),
    M("a steered prompt is recorded but the objective is not rebuilt", STEER,
      "            objective, self.prompt = self.build(replace(self.cfg, prompt=prompt)), prompt",
      "            self.prompt = prompt", T),
    M("a steered lr is ignored", STEER,
      "return scheduled if lr is None else scheduled * (lr / self.cfg.optimizer.lr)", "return scheduled", T),
    M("the job's own steer: entries are not replayed", STEER,
      'self.entries = [{"at": e.at, **check_change({"prompt": e.prompt, "lr": e.lr})} for e in cfg.steer]',
      "self.entries = []", T),
    M("the newest entry does not win: the first one holds", STEER,
      "            if key in e:\n                out = e[key]",
      "            if key in e and out == default:\n                out = e[key]", T),
    M("an entry holds before its step", STEER, '            if e["at"] > step:\n                break',
      '            if e["at"] > step + 1:\n                break', T),
    M("the loop never asks the steering", LOOP, "        if steer is not None:  # paused",
      "        if False:  # paused", T),
    M("a steered job runs unsteered", STILL, "        if cfg.steer or ctx.steering is not None:",
      "        if False:", T),
    # --- the record
    M("job.yaml is not rewritten: the folder's job replays the unsteered run", PIPE,
      "            write_text(folder.job, to_yaml(steered[0]))\n", "", T),
    M("state.pt records the job before the steers: a resume is refused", PIPE,
      "            for saver in after:\n                saver.job = job_settings(steered[0])\n", "", T),
    M("final.png's job leaves the steers out", PIPE, "        cfg = steered[0]\n        job = job_settings(cfg)\n",
      "        job = job_settings(cfg)\n", T),
    # --- the API
    M("a stream's result config leaves the steers out", API,
      "            cfg = replace(cfg, steer=[SteerEntry(**e) for e in steering.entries])", "            pass", T_API),
    M("Pipeline.run ignores its steering", API,
      "runner = run_job if steer is None else functools.partial(run_job, steering=steer)", "runner = run_job",
      T_API),
    M("Pipeline.run of a folder already done leaves its steering open: steers accepted and lost", API,
      "            if steer is not None and not steer.finished:\n                steer.finish()",
      "            pass", T_API),
    M("a stream's steer goes nowhere", API, "        self.steering.steer(**change)", "        pass", T_API),
]
