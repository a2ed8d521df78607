"""Mutations of training (issue 41): the data (folder, CSV, skipped images, the split, batches, the order and the
crops), the CLIP trainer (loss, accumulation, autocast, schedule, weight decay, locks, checkpoints, resume), its
evaluation, the export and `--from`, data-parallel training, the command line, and the mini world's variant palette."""

from ._table import M

DATA, CLIP, EVAL = "vqclip/train/data.py", "vqclip/train/clip.py", "vqclip/train/evaluate.py"
EXPORT, DIST, CLI, WORLD = ("vqclip/train/export.py", "vqclip/train/distributed.py", "vqclip/cli/train.py",
                            "vqclip/mini/world.py")
T_DATA, T_CLIP, T_EVAL = ("tests/test_train_data.py",), ("tests/test_train_clip.py",), ("tests/test_train_evaluate.py",)
T_DIST, T_WORLD = ("tests/test_train_distributed.py",), ("tests/test_mini_world_variant.py",)

MUTATIONS = [
    # --- data
    M("an image exactly the minimum side is skipped as tiny", DATA, 'return "tiny" if min(w, h) < min_side else None',
      'return "tiny" if min(w, h) <= min_side else None', T_DATA),
    M("images without captions are trained on with no caption", DATA, "    if lacking:\n        named",
      "    if False:\n        named", T_DATA),
    M("unreadable images are skipped without a count", DATA, 'bad, tiny = why.count("unreadable"), why.count("tiny")',
      'bad, tiny = 0, why.count("tiny")', T_DATA),
    M("a CSV's image paths are read from the working folder, not the CSV's", DATA,
      "pairs.append(Pair(path.parent / str(image), text))", "pairs.append(Pair(Path(str(image)), text))", T_DATA),
    M("a small held-out share holds out nothing", DATA, "1 if val > 0 and n > 1 else 0", "0", T_DATA),
    M("a batch one larger than the training pairs is accepted", DATA, "if batch > n_train:", "if batch > n_train + 1:",
      T_DATA),
    M("the split records paths relative to the folder training started in", DATA,
      '{"image": str(pairs[i].image.absolute()),', '{"image": str(pairs[i].image),', T_DATA),
    M("every epoch visits the pairs in the same order", DATA, "np.random.default_rng([seed, epoch])",
      "np.random.default_rng([seed, 0])", T_DATA),
    M("every step draws the same crops", DATA, "seed * 1_000_003 + step * batch + j", "seed * 1_000_003 + j", T_DATA),
    M("the crops ignore their seeds", DATA, "            if seeds is not None:\n", "            if False:\n", T_DATA),
    # --- the trainer
    M("the temperature's gradient is counted once per micro-batch", CLIP, "scale if j == 0 else scale.detach()",
      "scale", T_CLIP),
    M("accumulation leaves the earlier micro-batches without gradient", CLIP,
      "all_img = torch.cat([c[0] for c in cached[:j]] + [img]", "all_img = torch.cat([c[0] for c in cached[:j]] + "
      "[img.detach()]", T_CLIP),
    M("bf16 autocast is never on", CLIP, "dtype=torch.bfloat16, enabled=amp)", "dtype=torch.bfloat16, enabled=False)",
      T_CLIP),
    M("the warmup lasts a step longer", CLIP, "    if step < warmup:\n", "    if step <= warmup:\n", T_CLIP),
    M("frozen weights are handed to the optimiser", CLIP,
      "named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]",
      "named = [(n, p) for n, p in model.named_parameters()]", T_CLIP),
    M("--lock-image trains the image tower", CLIP, "        model.lock_image_tower()\n", "        pass\n", T_CLIP),
    M("a resume restarts the schedule", CLIP, '        sched.load_state_dict(state["scheduler"])\n', "", T_CLIP),
    M("a resume restarts Adam's moments", CLIP, '        opt.load_state_dict(state["optimizer"])\n', "", T_CLIP),
    M("checkpoints one step off", CLIP, "(done % cfg.checkpoint_every == 0 or done == cfg.steps)",
      "((done + 1) % cfg.checkpoint_every == 0 or done == cfg.steps)", T_CLIP),
    M("Ctrl-C names the step it stopped at as the checkpoint kept", CLIP,
      "kept = (done // cfg.checkpoint_every) * cfg.checkpoint_every", "kept = done", T_CLIP),
    M("a finished run's folder is trained over", CLIP, "        if (run / CHECKPOINT_FILE).exists():",
      "        if False:", T_CLIP),
    M("the batch need not split into micro-batches", CLIP, "        if self.batch % (self.accum * procs):",
      "        if False:", T_CLIP),
    # --- evaluation
    M("recall@5 looks at the best one only", EVAL, "top = sim.topk(min(k, sim.shape[1]), dim=1).indices",
      "top = sim.topk(1, dim=1).indices", T_EVAL),
    M("a caption alike to the query's is a wrong answer", EVAL, "label = torch.tensor([ids[c] for c in captions])",
      "label = torch.arange(len(captions))", T_EVAL),
    M("text->image recall is image->text's", EVAL, '"text_to_image_r1": _hits(sim.t(), same, 1)',
      '"text_to_image_r1": _hits(sim, same, 1)', T_EVAL),
    M("a caption naming two classes is counted as the first", EVAL, "f[0] if len(f) == 1 else None",
      "f[0] if f else None", T_EVAL),
    M("captions seen once become classes", EVAL, "min(counts.values()) < 2", "min(counts.values()) < 1", T_EVAL),
    M("class embeddings are not unit after averaging", EVAL, "out.append(F.normalize(f.mean(0), dim=-1))",
      "out.append(f.mean(0))", T_EVAL),
    # --- export and --from
    M("the export is written in fp16", EXPORT, "v.detach().float().contiguous().cpu()",
      "v.detach().half().contiguous().cpu()", T_CLIP),
    M("the recorded sha256 is the config's for every file", EXPORT, '"sha256": sha256(out / n)',
      '"sha256": sha256(out / CONFIG_NAME)', T_CLIP),
    M("a --from that is no open_clip model is tried as one", EXPORT,
      'if ClipSpec.parse(model).form != "name" or model not in open_clip.list_models() and not openai_name(model):',
      'if ClipSpec.parse(model).form != "name":', T_CLIP),
    M("an embedded preset's VQGAN is paired with the exported CLIP", EXPORT,
      "return own if own is not None and not own.embedded else", "return own if own is not None else", T_CLIP),
    M("the exported preset forgets the CLIP's templates", EXPORT, '"templates": list(templates)}}', '}}', T_CLIP),
    M("a fine-tuned OpenAI CLIP is exported without its QuickGELU", EXPORT, '            cfg["quick_gelu"] = True\n',
      "            pass\n", T_CLIP),
    M("the tag after MODEL/ is dropped", EXPORT, "    return model, tag or None", "    return model, None", T_CLIP),
    # --- data-parallel
    M("gradients are summed over processes, not averaged", DIST, "            p.grad.div_(group.size)\n", "", T_DIST),
    M("every process takes the first share of the batch", DIST, "return items[self.rank * n:(self.rank + 1) * n]",
      "return items[:n]", T_DIST),
    M("devices of two kinds are accepted", DIST, "len({torch.device(d).type for d in devices}) != 1",
      "len({torch.device(d).type for d in devices}) > 2", T_DIST),
    M("the features are gathered without grad", CLIP, "ClipLoss(gather_with_grad=True,",
      "ClipLoss(gather_with_grad=False,", T_DIST),
    # --- the command line
    M("--no-amp is ignored", CLI, "amp=not args.no_amp", "amp=True", T_CLIP),
    M("--templates are split at commas", CLI, 'templates=_split(args.templates, ";")',
      'templates=_split(args.templates, ",")', T_CLIP),
    M("--devices is dropped", CLI, "devices=args.devices or \"\")", "devices=\"\")",
      T_CLIP),
    # --- the mini world's variant palette
    M("a variant scene renders with the shipped colours", WORLD,
      "    colors = COLORS if colors is None else colors\n    img = np.empty", "    colors = COLORS\n    img = np.empty",
      T_WORLD),
    M("a variant scene's background comes from the shipped colours", WORLD, "bg = other_color(rng, color, colors)",
      "bg = other_color(rng, color)", T_WORLD),
    M("a shipped colour name is taken as a new one", WORLD, 'if name in COLORS or not re.fullmatch(r"[a-z]+", name):',
      'if not re.fullmatch(r"[a-z]+", name):', T_WORLD),
]
