"""Mutations of vqclip/terms/ (the loss terms beside CLIP and the looks) and of the code that wires them in: the
objective's use of the terms, circular decoding (vqclip/nets/tiling.py, the lean decoder's circular padding), the
looks' checks and the page's palette image."""

from ._table import M

BASE, COLORS, REG = "vqclip/terms/base.py", "vqclip/terms/colors.py", "vqclip/terms/registry.py"
INIT, TV, GUIDE = "vqclip/terms/init.py", "vqclip/terms/tv.py", "vqclip/terms/guide.py"
PAL, SYM, TILE = "vqclip/terms/palette.py", "vqclip/terms/symmetry.py", "vqclip/terms/tile.py"
TILING, LEAN, OBJ = "vqclip/nets/tiling.py", "vqclip/nets/lean.py", "vqclip/optim/objective.py"
CHECKS, PAGE = "vqclip/config/checks.py", "vqclip/ui/jobs.py"
TERMS_T, LOOKS_T, TILING_T = "tests/test_terms.py", "tests/test_looks.py", "tests/test_tiling.py"
TILE_TERMS_T = "tests/test_tile_terms.py"

MUTATIONS = [
    # --- the registry and the building of a job's terms
    M("an unknown term name is a KeyError, not a one-line error", REG, "    if name not in TERMS:\n",
      "    if False:\n", (TERMS_T,)),
    M("symmetry accepts a z axis", REG, 'SYMMETRY_AXES = ("x", "y")', 'SYMMETRY_AXES = ("x", "y", "z")', (LOOKS_T,)),
    M("tv summed before init", REG, '    "init": "vqclip.terms.init:InitTerm",\n    "tv": "vqclip.terms.tv:TVTerm",\n',
      '    "tv": "vqclip.terms.tv:TVTerm",\n    "init": "vqclip.terms.init:InitTerm",\n', (TERMS_T,)),
    M("every term built, used or not", BASE, "for cls in classes if cls.wanted(cfg, models)]", "for cls in classes]",
      (TERMS_T,)),
    M("the terms summed in reverse order", BASE, "classes = [load(name) for name in TERMS]",
      "classes = [load(name) for name in reversed(TERMS)]", (TERMS_T,)),
    M("the terms built without the run's precision", BASE, "cls(cfg, models, device, amp)", "cls(cfg, models, device)",
      (TERMS_T,)),
    # --- colours
    M("an RGBA colour keeps its alpha", COLORS, "ImageColor.getrgb(str(color).strip())[:3]",
      "ImageColor.getrgb(str(color).strip())", (TERMS_T,)),
    M("a colour with spaces around it is no colour", COLORS, "ImageColor.getrgb(str(color).strip())",
      "ImageColor.getrgb(str(color))", (TERMS_T,)),
    M("a non-colour escapes as PIL's ValueError", COLORS, "    except ValueError:\n", "    except TypeError:\n",
      (TERMS_T,)),
    # --- the moved terms: init, tv, guide
    M("init term with its sign flipped", INIT, "return self.weight * F.mse_loss(z, z_init)",
      "return -self.weight * F.mse_loss(z, z_init)", ("tests/test_loop.py",)),
    M("an init term of weight 0 is still added", INIT, "return cfg.init.weight > 0", "return cfg.init.weight >= 0",
      ("tests/test_objective.py",)),
    M("init.weight read as 1", INIT, "self.weight = cfg.init.weight", "self.weight = 1.0", (TERMS_T,)),
    M("tv weight ignored", TV, "return self.weight * (circular_tv_loss(image) if self.circular else tv_loss(image))",
      "return (circular_tv_loss(image) if self.circular else tv_loss(image))",
      ("tests/test_loop.py", "tests/test_perf_equivalence.py")),
    M("a tv term of weight 0 is still added", TV, "return cfg.tv_weight > 0", "return cfg.tv_weight >= 0",
      ("tests/test_objective.py",)),
    M("tv_weight read as 1", TV, "self.weight = cfg.tv_weight", "self.weight = 1.0", (TERMS_T,)),
    M("tv measured along one axis only", "vqclip/optim/losses.py", "return dx.pow(2).mean() + dy.pow(2).mean()",
      "return dx.pow(2).mean()", (TERMS_T, TILE_TERMS_T)),
    M("guide weight ignored", GUIDE, "return self.weight * self.classifier(random_roll(image) if self.tile else image",
      "return self.classifier(random_roll(image) if self.tile else image", ("tests/test_guide.py",)),
    M("guide.views ignored", GUIDE, "GuideTerm(models.guide, cfg.guide.views)", "GuideTerm(models.guide)",
      ("tests/test_guidance.py",)),
    M("a guide of weight 0 is still built", GUIDE, "return bool(models.guide) and cfg.guide.weight > 0",
      "return bool(models.guide)", ("tests/test_guide.py", "tests/test_guidance.py")),
    # --- palette
    M("each pixel measured to its farthest palette colour", PAL, "d, index = dists.min(-1)",
      "d, index = dists.max(-1)", (TERMS_T,)),
    M("the snap passes no gradient", PAL, "return snapped + (image - image.detach())", "return snapped", (TERMS_T,)),
    M("a hard palette still adds its distance", PAL, "return None if self.hard else", "return None if False else",
      (TERMS_T,)),
    M("a hard palette does not snap the shown image", PAL, "return snap(image, self.palette) if self.hard else image",
      "return image", (LOOKS_T,)),
    M("palette.image ignored", PAL, "    if cfg.palette.image:\n", "    if False:\n", (LOOKS_T,)),
    M("an image's palette is its 4-bit bins, not their means", PAL, "                centres[i] = mine.mean(0)",
      "                pass", (TERMS_T,)),
    M("a palette of weight 0 is still built", PAL, "(p.hard or p.weight > 0)", "(p.hard or p.weight >= 0)",
      (TERMS_T,)),
    M("palette.weight ignored", PAL, "self.weight * palette_loss(image, self.palette)",
      "palette_loss(image, self.palette)", (TERMS_T,)),
    # --- symmetry
    M("symmetry x and y swapped", SYM, 'FLIP_DIM = {"x": -1, "y": -2}', 'FLIP_DIM = {"x": -2, "y": -1}', (TERMS_T,)),
    M("only the first symmetry axis counts", SYM, "for a in axes)", "for a in axes[:1])", (TERMS_T,)),
    M("the mirror difference signed, not absolute", SYM, "(image - image.flip(FLIP_DIM[a])).abs().mean()",
      "(image - image.flip(FLIP_DIM[a])).mean()", (TERMS_T,)),
    M("symmetry.weight ignored", SYM, "return self.weight * symmetry_loss(image, self.axes)",
      "return symmetry_loss(image, self.axes)", (TERMS_T,)),
    # --- tile
    M("the cutouts see the image unrolled", TILE, "        return random_roll(image)\n", "        return image\n",
      (TERMS_T,)),
    M("the tile's roll moves only across", TILE, "return image.roll((dy, dx), (-2, -1))", "return image.roll(dx, -1)",
      (TERMS_T,)),
    M("a tiled job decodes with zeros padding", TILE,
      "        return circular(drawer.decoder) if drawer.decoder is not None else nullcontext()\n",
      "        return super().decoding(drawer)\n", (TERMS_T,)),
    M("tile: true ignored", TILE, "return bool(cfg.tile)", "return False", (TERMS_T,)),
    # --- circular decoding
    M("the decoder pads by reflection, not around", TILING, '[(m, "circular") for m in', '[(m, "reflect") for m in',
      (TILING_T,)),
    M("the shared decoder is left circular after a tiled decode", TILING, "            m.padding_mode = mode\n",
      "            pass\n", (TILING_T,)),
    M("a failed decode leaves the decoder circular", TILING, "    try:\n        yield\n    finally:\n",
      "    yield\n    if True:\n", (TILING_T,)),
    M("a checkpointed level recomputes with the padding of backward time", TILING,
      "return nullcontext(), _padding(", "return nullcontext(), nullcontext(", (TILING_T,)),
    M("the lean decoder's checkpoints recompute with zeros padding", LEAN,
      "use_reentrant=False,\n                                context_fn=lambda: padding_as_now(decoder))",
      "use_reentrant=False)", (TILING_T,)),
    M("the lean decoder pads with zeros in a tiled job", LEAN, '    if conv.padding_mode == "circular":\n',
      "    if False:\n", (TILING_T,)),
    M("the lean decoder's circular gradient padded again", LEAN, "grad.to(ctx.dtype), conv.stride,\n"
      "                                        ctx.padding,", "grad.to(ctx.dtype), conv.stride,\n"
      "                                        conv.padding,", (TILING_T,)),
    # --- the objective's use of the terms
    M("a term's value is left out of the loss", OBJ, "                parts[term.name] = value\n",
      "                pass\n", (TERMS_T,)),
    M("the cutouts drawn from the image before the terms' view of it", OBJ, "batch = cut.apply(seen,",
      "batch = cut.apply(image,", (TERMS_T,)),
    M("the shown image not the terms' (no hard palette)", OBJ, "            image = term.shown(image)\n",
      "            pass\n", (TERMS_T, LOOKS_T)),
    M("the decoding outside the terms' context (no circular padding)", OBJ,
      "                looks.enter_context(term.decoding(self.drawer))\n", "                pass\n", (TERMS_T,)),
    # --- checks and the page
    M("palette.size 0 accepted", CHECKS, "p.size >= 1,", "p.size >= 0,", (LOOKS_T,)),
    M("a negative palette weight accepted", CHECKS, "p.weight >= 0,", "p.weight >= -1,", (LOOKS_T,)),
    M("a hard palette without colours accepted", CHECKS, "    if p.hard and not (p.colors or p.image):\n",
      "    if False:\n", (LOOKS_T,)),
    M("a palette colour that is no colour accepted", CHECKS, "        rgb(name)  # a name",
      "        str(name)  # a name", (LOOKS_T,)),
    M("an unknown symmetry axis accepted", CHECKS, '        _one_of(axis, SYMMETRY_AXES, "symmetry.axes")\n',
      "        pass\n", (LOOKS_T,)),
    M("a missing palette image found only by the run", CHECKS,
      '    wanted += [("palette.image", cfg.palette.image, "image")] if cfg.palette.image else []\n', "", (LOOKS_T,)),
    M("the page takes a server path as the palette image (its option not marked as an image)", "vqclip/config/job.py",
      'flag="--palette-image", metavar="PATH", path="image")', 'flag="--palette-image", metavar="PATH")', (LOOKS_T,)),
    # --- a tiled job's TV and guide see no border
    M("a tiled job's TV leaves the pixel pairs across the wrap free", TV, "self.circular = bool(cfg.tile)",
      "self.circular = False", (TILE_TERMS_T,)),
    M("every job's TV wraps around, smoothing a plain image across its border", TV, "self.circular = bool(cfg.tile)",
      "self.circular = True", (TILE_TERMS_T,)),
    M("the circular TV compares each pixel with the one two along", TV, "dx = image.roll(-1, -1) - image",
      "dx = image.roll(-2, -1) - image", (TILE_TERMS_T,)),
    M("the circular TV wraps only across, not down", TV, "dy = image.roll(-1, -2) - image",
      "dy = image[..., 1:, :] - image[..., :-1, :]", (TILE_TERMS_T,)),
    M("a tiled job's guide sees the image unrolled, its border a border", GUIDE,
      "random_roll(image) if self.tile else image", "image", (TILE_TERMS_T,)),
    M("every job's guide sees the image rolled", GUIDE, "self.tile = bool(cfg.tile)", "self.tile = True",
      (TILE_TERMS_T,)),
]
