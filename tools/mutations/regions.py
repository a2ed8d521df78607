"""Mutations of region prompts (issue 37 item 2): the '@region' syntax, the named regions and mask images, each
cutout's coverage and its weight in the loss, in one pass, chunks and shards, stories and the config checks."""

from ._table import M

REG, COV = "vqclip/optim/regions.py", "vqclip/optim/coverage.py"
PROMPTS, LOSSES, SCORING = "vqclip/optim/prompts.py", "vqclip/optim/losses.py", "vqclip/optim/scoring.py"
OBJ, SCHED, AUG, CHECKS = ("vqclip/optim/objective.py", "vqclip/optim/schedules.py", "vqclip/optim/augments.py",
                           "vqclip/config/checks.py")
T_REG, T_COV = ("tests/test_regions.py",), ("tests/test_coverage.py",)

MUTATIONS = [
    # --- named regions and mask images
    M("a region's edge pixel counted whole or not at all (odd widths lose their half column)", REG,
      "np.clip(np.minimum(k + 1, hi * n) - np.maximum(k, lo * n), 0, 1)",
      "np.clip(np.minimum(k + 1, np.floor(hi * n)) - np.maximum(k, np.floor(lo * n)), 0, 1)", T_REG),
    M("border is the centre, not all but the centre", REG, 'return 1 - named_mask("centre", width, height)',
      'return named_mask("centre", width, height)', T_REG),
    M("right is the left half", REG, '"right": (0.5, 0, 1, 1)', '"right": (0, 0, 0.5, 1)', T_REG),
    M("center (US spelling) is not a region", REG, 'ALIASES = {"center": "centre"}', "ALIASES = {}", T_REG),
    M("any word after '@' taken as a mask path", REG,
      "if name in REGIONS or name.lower().endswith(MASK_SUFFIXES):", "if True:", T_REG),
    M("an all-black mask accepted: the prompt pulls nowhere, silently", REG, "    if not mask.any():\n",
      "    if False:\n", T_REG),
    M("a mask image of another size is not resized to the canvas", REG,
      "if width is not None and height is not None and grey.size != (width, height):", "if False:", T_REG),
    M("a mask image read as its red channel's inverse", REG, "mask = np.asarray(grey, dtype=np.float64) / 255",
      "mask = 1 - np.asarray(grey, dtype=np.float64) / 255", T_REG),
    # --- the '@region' syntax
    M("an '@' followed by a space read as a region", PROMPTS, "any(c.isspace() for c in tail) or", "False or",
      T_REG),
    M("a negative prompt's region dropped: it pushes everywhere", PROMPTS, "stop=p.stop, region=p.region))",
      "stop=p.stop))", T_REG),
    M("the YAML mask: lost in the stored string", PROMPTS,
      'return out + (f"@{p.region}" if p.region is not None else "")',
      "return out", T_REG),
    M("'text@left:1' silently read as a text with '@' in it", PROMPTS, "if check_region(region, None) is not None:",
      "if False:", T_REG),
    # --- coverage and its weights
    M("the geometric augments not replayed on the mask: coverage of the box only", COV,
      "if draw.augment is not None and augment is not None:", "if False:", T_COV),
    M("the mask resampled nearest while the pixels are bilinear", AUG, '"resample": Resample.BILINEAR',
      '"resample": Resample.NEAREST', T_COV),
    M("coverage is the largest mask value in the cutout, not its mean", COV, "return seen.mean((2, 3))",
      "return seen.amax((2, 3))", T_COV),
    M("weights normalised over all starts together, not each start", COV,
      "column = cover[:, r].view(starts, n // starts)",
      "column = cover[:, r].view(1, n)", T_COV),
    M("a start that misses the region gets NaN weights", COV,
      "mean = column.mean(1, keepdim=True).clamp(min=torch.finfo(cover.dtype).tiny)",
      "mean = column.mean(1, keepdim=True)", T_COV),
    M("a prompt without a region weighted by the last region's coverage", COV,
      "        if r < 0:\n            continue", "        if r < -1:\n            continue", T_COV),
    M("coverage not normalised: a small region makes a weak prompt", COV, "out[:, m] = (column / mean).reshape(n)",
      "out[:, m] = column.reshape(n)", T_COV),
    M("the per-cutout weights ignored by the loss", LOSSES, "        dists = dists * cover\n", "        pass\n", T_COV),
    M("each chunk weighted by the first chunk's coverage", SCORING, "covers = cover.split(self.chunk) if",
      "covers = [cover[:self.chunk]] * len(leaf.split(self.chunk)) if", T_COV),
    M("a device's shard weighted by the first rows' coverage", SCORING, "None if cover is None else cover[lo:hi]",
      "None if cover is None else cover[:hi - lo]", T_COV),
    M("the objective normalises the coverage over all best-of-n starts at once", OBJ,
      "self.region_of, b)", "self.region_of, 1)", T_COV),
    M("a story merges one text's regions into the first", SCHED, "index.setdefault((p.text, p.stop, p.region)",
      "index.setdefault((p.text, p.stop, None)", T_REG),
    M("a region prompt aims the classifier that judges the whole image", OBJ,
      "if not p.image and w > 0 and p.region is None))", "if not p.image and w > 0))", T_REG),
    M("best of n picks its start ignoring the regions", "vqclip/modes/bestofn.py",
      "(self.objective.regions, self.objective.region_of))", "None)", T_COV),
    M("best of n scores a region prompt on every view alike", "vqclip/modes/bestofn.py", "weights, None, cover).item()",
      "weights).item()", T_COV),
    # --- the checks
    M("--tile with regions runs (the roll makes left meaningless)", CHECKS, "if cfg.tile and job_regions(cfg):",
      "if False:", T_REG),
    M("a bad mask found only when its job starts (vqclip run has started the jobs before it)", CHECKS,
      "        if region not in REGIONS:\n",
      "        if False:\n", T_REG),
    M("a story keyframe's mask not checked", SCHED,
      "    specs = [k.prompt for k in keyframes] + ([] if STORY_SEPARATOR in cfg.prompt else [cfg.prompt])\n"
      "    prompts = ",
      "    specs = [] + ([] if STORY_SEPARATOR in cfg.prompt else [cfg.prompt])\n    prompts = ", T_REG),
]
