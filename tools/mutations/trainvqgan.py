"""Mutations of `vqclip train vqgan` (issue 41): the objective (taming's L1 + perceptual + codebook + the patch
discriminator with its adaptive weight), frozen parts, autocast, crops, checkpoints and resume, the grids, the size
checks, the exported preset folder and `--from`, the LPIPS weights, the image-only reader and the command line."""

from ._table import M

VQ, EXP, LP, DATA, CLI, PRE = ("vqclip/train/vqgan.py", "vqclip/train/vqexport.py", "vqclip/train/perceptual.py",
                               "vqclip/train/data.py", "vqclip/cli/trainvqgan.py", "vqclip/models/presets.py")
T_VQ, T_EXP = ("tests/test_train_vqgan.py",), ("tests/test_train_vqexport.py",)
T_LP = ("tests/test_train_perceptual.py",)
T_IMG = ("tests/test_train_images.py",)

MUTATIONS = [
    # --- the objective
    M("the discriminator joins one step after --disc-start", VQ, "    if step >= cfg.disc_start:\n        g_loss",
      "    if step > cfg.disc_start:\n        g_loss", T_VQ),
    M("the generator is pushed away from what fools the discriminator", VQ, "g_loss = -disc(rec).mean()",
      "g_loss = disc(rec).mean()", T_VQ),
    M("the adaptive weight divides by zero when the GAN gradient vanishes", VQ, "(torch.norm(g_grads) + 1e-4)",
      "torch.norm(g_grads)", T_VQ),
    M("the adaptive weight is not clamped", VQ, "torch.clamp(d_weight, 0.0, 1e4).detach()", "d_weight.detach()", T_VQ),
    M("--disc-weight is ignored", VQ, ".detach() * disc_weight", ".detach()", T_VQ),
    M("--codebook-weight is ignored", VQ, "cfg.codebook_weight * qloss.mean()", "qloss.mean()", T_VQ),
    M("--perceptual-weight is ignored", VQ, "cfg.perceptual_weight * lpips(inputs, rec)", "lpips(inputs, rec)", T_VQ),
    M("the discriminator learns real and fake the wrong way round", VQ,
      "hinge_d_loss(disc(x.detach() * 2 - 1), disc(rec.detach()))",
      "hinge_d_loss(disc(rec.detach()), disc(x.detach() * 2 - 1))", T_VQ),
    M("a VQGAN training never runs under bf16 autocast", VQ,
      "torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=amp)",
      "torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=False)", T_VQ),
    # --- frozen parts, crops, sizes
    M("--freeze encoder still trains quant_conv", VQ, "        model.quant_conv.requires_grad_(False)\n", "", T_VQ),
    M("--freeze codebook trains the codebook", VQ, '    elif freeze == "codebook":', '    elif freeze == "x":', T_VQ),
    M("crops never reach the last column", VQ, "int(torch.randint(0, w - size + 1, ()))",
      "int(torch.randint(0, w - size, ()))", T_VQ),
    M("held-out images are cropped at the corner, not the centre", VQ, "x, y = (w - size) // 2, (h - size) // 2",
      "x, y = 0, 0", T_VQ),
    M("a --size the VQGAN cannot take is accepted", VQ, "    if size % factor:\n", "    if False:\n", T_VQ),
    M("--size 32 is refused though the discriminator takes it", VQ, "if self.size < 2 ** (DISC_LAYERS + 2):",
      "if self.size <= 2 ** (DISC_LAYERS + 2):", T_VQ),
    M("a batch as large as the training images is refused", VQ, "if cfg.batch > len(train_ids):",
      "if cfg.batch >= len(train_ids):", T_VQ),
    # --- checkpoints, resume, grids
    M("a checkpoint is written only at the end", VQ, "if done % cfg.checkpoint_every == 0 or done == cfg.steps:",
      "if done == cfg.steps:", T_VQ),
    M("a resumed run restarts its discriminator", VQ, '        disc.load_state_dict(state["disc"])\n', "", T_VQ),
    M("a resumed run restarts the generator's optimiser", VQ, '        opt_g.load_state_dict(state["opt_g"])\n', "",
      T_VQ),
    M("a resumed run starts again at step 0", VQ, '        start = state["step"]', "        start = 0", T_VQ),
    M("grids are written only at the end", VQ, "(done % cfg.grid_every == 0 or done == cfg.steps)",
      "(done == cfg.steps)", T_VQ),
    # --- the exported preset and --from
    M("the export is written in half precision", EXP, "v.detach().float().contiguous().cpu()",
      "v.detach().half().contiguous().cpu()", T_VQ + T_EXP),
    M("the preset records the config's sha256 for the weights", EXP, '"sha256": sha256(out / n)}',
      '"sha256": sha256(out / CONFIG_NAME)}', T_VQ + T_EXP),
    M("an export from mini forgets its vocabulary", EXP, "    if preset.vocabulary is not None:\n",
      "    if False:\n", T_EXP),
    M("CONFIG+CHECKPOINT is read the wrong way round", EXP, 'config, _, ckpt = source.partition("+")',
      'ckpt, _, config = source.partition("+")', T_EXP),
    M("a GumbelVQ is trained as a VQModel", EXP, "    if gumbel:\n        raise", "    if False:\n        raise",
      T_EXP),
    M("a preset folder's files are looked for in the model home", PRE,
      "return dataclasses.replace(next(iter(found.values())), base=folder.absolute())",
      "return next(iter(found.values()))", T_VQ + T_EXP),
    M("a preset folder with several presets takes the first", PRE, "        if len(found) != 1:",
      "        if len(found) > 2:", T_EXP),
    # --- LPIPS
    M("the LPIPS weights are downloaded in the middle of a training", LP,
      "aux_file(LIN_PRESET, download=False, progress=False, home_dir=home_dir)",
      "aux_file(LIN_PRESET, download=True, progress=False, home_dir=home_dir)", T_LP),
    M("LPIPS runs with dropout on", LP, "return lp.eval().requires_grad_(False)", "return lp.requires_grad_(False)",
      T_LP),
    M("a mis-shaped LPIPS file is a traceback", LP, "or state[k].shape != expected[k].shape]", "or False]", T_LP),
    M("the VGG slices get the wrong torchvision layers", LP, 'vgg.get(f"features.{name}.{p}")',
      'vgg.get(f"features.{int(name) + 2}.{p}")', T_LP),
    # --- the image-only reader
    M("images in subfolders are not found", DATA, "p for p in data.rglob(", "p for p in data.glob(", T_IMG),
    M("a folder of unusable images trains on nothing", DATA, "    if not kept:  # every image unusable",
      "    if False:  # every image unusable", T_IMG),
    M("a VQGAN's unreadable images are skipped without a count", DATA,
      'unreadable, small = why.count("unreadable"), why.count("tiny")', 'unreadable, small = 0, why.count("tiny")',
      T_IMG),
    # --- the command line
    M("--freeze is ignored", CLI, 'freeze=args.freeze or ""', 'freeze=""', T_VQ),
    M("--amp is ignored", CLI, "amp=args.amp,", "amp=False,", T_VQ),
    M("--disc-start is ignored", CLI, "disc_start=args.disc_start,", "disc_start=500,", T_VQ),
]
