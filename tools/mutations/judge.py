"""Mutations of the held-out judge (issue 40 items 1, 3, 5): scores.json's checks and its atomic write, the judge's
scores and its aesthetic head, the run's judging (best frame, patience, the resume's rebuild, no judge that guides),
the pipeline's wiring, `vqclip rank` and the batch grid by the judge."""

from ._table import M

SCORES, NET, RUN = "vqclip/files/scores.py", "vqclip/nets/judge.py", "vqclip/runs/judging.py"
PIPE, RESUME, PLAN = "vqclip/runs/pipeline.py", "vqclip/runs/resume.py", "vqclip/runs/plan.py"
CLIPPING, BATCH, CHECKS = "vqclip/tools/clipping.py", "vqclip/runs/batch.py", "vqclip/config/checks.py"
PRESETS = "vqclip/models/presets.py"
T_SCORES, T_NET, T_RUN = ("tests/test_scores.py",), ("tests/test_judge.py",), ("tests/test_judging.py",)
T_RANK = ("tests/test_judge_rank.py",)

MUTATIONS = [
    # --- files/scores.py: the contract's checks, the atomic write, the final image's score
    M("a NaN judge score written into scores.json", SCORES, "or not math.isfinite(value):", ":", T_SCORES),
    M("a negative step accepted", SCORES, "or value < 0:", ":", T_SCORES),
    M("an unknown stopped_by accepted", SCORES, 'if stopped not in (None, "patience"):', "if False:", T_SCORES),
    M("a bad record written before it is checked", SCORES,
      'return write_text(path, json.dumps(check_scores(data, str(path)), indent=1) + "\\n")',
      'return write_text(path, json.dumps(data, indent=1) + "\\n")', T_SCORES),
    M("the final image's score is the first frame's", SCORES, 'max(frames, key=lambda f: f["step"])',
      'min(frames, key=lambda f: f["step"])', T_SCORES + T_RANK),
    # --- nets/judge.py: the cosine, its weights, the guides' score, the head
    M("the texts' weights ignored in the judge's score", NET, "return (feats @ target.t()) @ weights",
      "return (feats @ target.t()).mean(1)", T_NET),
    M("the guide's score is the judge's", NET,
      "parts = [self._cosine(clip, self._embed(clip, images)) * (w / total) for clip, w in self.guides if w > 0]",
      "parts = [self._cosine(self.clip, feats) * (w / total) for clip, w in self.guides if w > 0]", T_NET),
    M("an aesthetic head of another embedding width accepted", NET,
      "if tuple(weight.shape) != (1, dim) or tuple(bias.shape) != (1,):", "if False:", T_NET),
    M("an aesthetic head with extra tensors accepted", NET,
      'if weight is None or bias is None or set(state) != {"weight", "bias"}:',
      "if weight is None or bias is None:", T_NET),
    M("the aesthetic head's bias dropped", NET,
      'head.linear.load_state_dict({"weight": weight.float(), "bias": bias.float()})',
      'head.linear.load_state_dict({"weight": weight.float(), "bias": 0 * bias.float()})', T_NET),
    # --- runs/judging.py: no judge that guides, best frame, patience, the rebuild
    M("a judge that also guides is let through", RUN,
      "raise VqclipError(f\"output.judge: the judge (", "log.info(f\"output.judge: the judge (", T_NET),
    M("the same weights under another name are not the same model", RUN,
      "return pa.samefile(pb) or (pa.stat().st_size == pb.stat().st_size and sha256_file(pa) == sha256_file(pb))",
      "return pa.samefile(pb)", T_NET),
    M("a tie takes the later frame as the best", RUN, 'frame["judge"] > frames[self.best]["judge"]',
      'frame["judge"] >= frames[self.best]["judge"]', T_RUN),
    M("patience stops one frame late", RUN, "or self.stale < self.patience:", "or self.stale <= self.patience:",
      T_RUN),
    M("patience counts unscored steps", RUN, "or self.scored_at != event.step", "", T_RUN,
      equivalent="the counter changes only when a frame is scored, so it first reaches patience on a scored step; "
                 "the guard only says so"),
    M("a resume keeps the frames it makes again", RUN, 'if frame["step"] < start:', 'if frame["step"] <= start:',
      T_RUN),
    M("a resume forgets the frames before it (the counter starts over)", RUN,
      "old = read_scores(self.dir) if start > 0 else None", "old = None", T_RUN),
    M("best.png not written", RUN,
      "        if self._add(record) and self.keep_best:\n            self._keep(Path(path))",
      "        if self._add(record) and self.keep_best:\n            pass", T_RUN),
    M("the judge scores negative prompts too", RUN, "if p.weight > 0 and not p.image:", "if not p.image:", T_NET),
    M("no preset's judge named: taken silently", RUN, "    if preset.judge is None:\n        raise",
      "    if False:\n        raise", T_NET),
    # --- the pipeline, resume and plans
    M("the judge loads though output.judge is off", PIPE,
      "judge = load_judge(cfg, models, device, cache) if judged(cfg) else None",
      "judge = load_judge(cfg, models, device, cache)", T_RUN),
    M("frames written but not scored", PIPE, "        if self.on_write is not None:\n            self.on_write(",
      "        if False:\n            self.on_write(", T_RUN),
    M("patience never stops the run", PIPE, "        callbacks.append(judging)  # after", "        (judging)  # after",
      T_RUN),
    M("final.png does not record the best frame's step", PIPE,
      "            judging.record_in(result.info)", "            pass", T_RUN),
    M("a run that patience ended counts as stopped by the user", PIPE,
      'return self.result.stopped and self.result.info.get("stopped_by") != "patience"',
      "return self.result.stopped", T_RUN),
    M("a patience-ended run resumed past its end", RESUME, "    if patience is not None:  # its end",
      "    if False:  # its end", T_RUN),
    M("patience 0 accepted", CHECKS, "o.patience is None or o.patience >= 1", "o.patience is None or o.patience >= 0",
      T_RUN),
    M("keep_best with no frames saved accepted", CHECKS,
      "if (o.judge or o.keep_best or o.patience is not None) and o.save_every <= 0:",
      "if o.judge and o.save_every <= 0:", T_RUN),
    M("a run that patience ended is run again by a plan's re-run", PLAN,
      'if read_metadata(folder.final).get("stopped_by") == "patience":', "if False:", T_RUN),
    # --- presets, rank, the grid
    M("a preset's judge entry ignored", PRESETS,
      'judge=_judge(data["judge"], f"{where}.judge", embedded) if "judge" in data else None,', "judge=None,",
      T_NET),
    M("rank mixes judged and unjudged runs", CLIPPING, "if scored and len(scored) == len(finals) and",
      "if scored and", T_RANK),
    M("rank ignores the judge", CLIPPING, "    if judged is not None:  # every run", "    if False:  # every run",
      T_RANK),
    M("the grid's tiles lose their judge score", BATCH, "        if any(v is not None for v in judged.values()):",
      "        if False:", T_RANK),
]
