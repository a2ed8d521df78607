"""Mutations of branching and of resuming steered runs (issue 39): the child folder (its name, job, state, frames,
clean-up), `Steering.branch` and the loop's side, `vqclip branch`, the resume check of a state's steers (the state's
future may differ, its past may not), and a resumed run steered live."""

from ._table import M

BRANCH, STEER, LOOP = "vqclip/runs/branch.py", "vqclip/optim/steer.py", "vqclip/optim/loop.py"
STATE, RESUME, PLAN = "vqclip/runs/statefile.py", "vqclip/runs/resume.py", "vqclip/runs/plan.py"
PIPE, API, CLI = "vqclip/runs/pipeline.py", "vqclip/api.py", "vqclip/cli/animate.py"
T, T_CLI, T_RES = ("tests/test_branch.py",), ("tests/test_branch_cli.py",), ("tests/test_steer_resume.py",)

MUTATIONS = [
    # --- the child's folder
    M("a second branch writes into the first one's folder", BRANCH, "            path.mkdir()\n",
      "            path.mkdir(exist_ok=True)\n", T),
    M("a branch keeps the parent's steers from after its step", BRANCH,
      '    steer = [SteerEntry(**e) for e in past if e["at"] < step]', "    steer = [SteerEntry(**e) for e in past]",
      T_CLI),
    M("a branch does not record its parent and step", BRANCH,
      "branch=BranchConfig(parent=parent, step=step),", "branch=cfg.branch,", T),
    M("a branch starts from step 0 though the parent's state at its step was given", BRANCH,
      "        if saved is not None:\n            save_state(", "        if False:\n            save_state(", T),
    M("a branch takes along the parent's frames from after its step", BRANCH, "            if index < step:",
      "            if True:", T_CLI),
    M("a branch the job refuses leaves a half-written folder", BRANCH,
      "        shutil.rmtree(path, ignore_errors=True)\n", "        pass\n", T),
    M("vqclip branch takes a state.pt of another step as the child's start", BRANCH,
      'int(saved["step"]) != step or ', "", T_CLI),
    M("vqclip branch forks a run that another run is still writing", BRANCH,
      "    folder.lock()\n    try:\n        saved", "    try:\n        saved", T_CLI),
    # --- Steering.branch and the loop
    M("a branch with an unknown key or a bad lr is queued", STEER,
      'request = BranchRequest(check_change(changes, "branch", job=self._job_now()), bool(stop))',
      "request = BranchRequest(changes, bool(stop))", T),
    M("a branch of a finished run is queued and never written", STEER,
      '            self._refuse_when_finished("branch")\n', "", T),
    M("a full queue takes one more branch (an unbounded queue)", STEER,
      "            if len(self._queue) < self.size:  # one queue", "            if True:  # one queue", T),
    M("a branch still waiting when the run ends hangs its Future", STEER,
      "            if isinstance(request, BranchRequest):\n                request.future.set_exception(",
      "            if False:\n                request.future.set_exception(", T),
    M("stop=True does not stop the parent", STEER, "self.stopping = self.stopping or request.stop",
      "self.stopping = self.stopping", T),
    M("a branch loses the parent's earlier steers", STEER,
      'past = [dict(e) for e in self.entries if e["at"] < step]', "past = []", T),
    M("the loop gives a branch no state to start from", LOOP, "steer.before(state.step, objective, state)",
      "steer.before(state.step, objective)", T),
    M("the loop ignores a branch's stop", LOOP, "stopped = any(stops) or (steer is not None and steer.stopping)",
      "stopped = any(stops)", T),
    M("a live branch has nowhere to write its folder", PIPE,
      "            steering.on_branch = functools.partial(write_branch, cfg, folder)\n", "            pass\n", T),
    M("a stream in memory takes a branch it can never write", API, "        if self._out is None:\n            raise",
      "        if False:\n            raise", T),
    M("a branch.step past the last step accepted", "vqclip/config/checks.py", "not 0 <= b.step < cfg.steps",
      "not 0 <= b.step <= cfg.steps", T),
    M("the infotext names a branch's step as its parent", "vqclip/files/infotext.py",
      "\"Branch of\": f\"{cfg['branch']['parent']} at step", "\"Branch of\": f\"{cfg['branch']['step']} at step", T),
    # --- vqclip branch
    M("vqclip branch --stop runs the child anyway", CLI, "    if args.stop:\n", "    if False:\n", T_CLI),
    M("vqclip branch ignores --lr", CLI, '{"prompt": args.prompt, "lr": args.lr}', '{"prompt": args.prompt}', T_CLI),
    # --- resuming steered runs
    M("a steer taken after the last state.pt makes the killed run unresumable", STATE,
      'for k, v in job_changes(recorded, cfg).items() if k != "steer"}',
      "for k, v in job_changes(recorded, cfg).items()}", T_RES),
    M("a changed steer before the state's step accepted", STATE, "        if was != got:\n", "        if False:\n",
      T_RES),
    M("a steer at the state's own step counted as its past", STATE, 'mine = [_given(e) for e in now if e["at"] < step]',
      'mine = [_given(e) for e in now if e["at"] <= step]', T_RES),
    M("a resumed run ignores its live steering", RESUME, "saved=saved,\n                       steering=steering)",
      "saved=saved)", T_RES),
    M("a resume refused before it runs leaves its steering open (steers then are lost)", RESUME,
      "        if steering is not None and not steering.finished:  # refused", "        if False:  # refused", T_RES),
    M("Pipeline.run resumes a stopped run unsteered", PLAN,
      "extra_callbacks=callbacks, steering=steering)", "extra_callbacks=callbacks)", T_RES),
]
