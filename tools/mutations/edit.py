"""Mutations of an edit (issue 37: masked editing and outpainting): the mask math (vqclip/optim/masks.py), the edit
term that masks the gradient and composites the original (vqclip/terms/edit.py), and where the run path wires them
in: the start, the canvas size, the checks, the run folder's mask.png and the API's mask."""

from ._table import M

MASKS, EDIT, REG = "vqclip/optim/masks.py", "vqclip/terms/edit.py", "vqclip/terms/registry.py"
OBJ, STATE, CHECKS = "vqclip/optim/objective.py", "vqclip/optim/state.py", "vqclip/config/checks.py"
RULES, PIPE, JOBS = "vqclip/modes/rules.py", "vqclip/runs/pipeline.py", "vqclip/runs/jobs.py"
STATEFILE, API = "vqclip/runs/statefile.py", "vqclip/api.py"
MASKS_T, EDIT_T = "tests/test_masks.py", "tests/test_edit.py"

MUTATIONS = [
    # --- the mask math
    M("the feather band is one pixel short", MASKS, "    for _ in range(pixels):\n",
      "    for _ in range(pixels - 1):\n", (MASKS_T,)),
    M("the feather falls off faster than its width", MASKS, "step = 1.0 / (pixels + 1)", "step = 1.0 / (pixels + 0.5)",
      (MASKS_T,)),
    M("a drawer cell is masked by its mean, not its largest value", MASKS,
      "return F.max_pool2d(mask, factor) if factor > 1 else mask", "return F.avg_pool2d(mask, factor) if factor > 1 "
      "else mask", (MASKS_T, EDIT_T)),
    M("the composite keeps the image outside the mask and the original inside", MASKS,
      "return base * (1 - mask) + image * mask", "return image * (1 - mask) + base * mask", (MASKS_T, EDIT_T)),
    M("an all-black mask is taken (nothing may change, silently)", MASKS, "    if not bool((mask > 0).any()):\n",
      "    if False:\n", (MASKS_T,)),
    M("a mask of another size is resized with nearest neighbours", MASKS,
      'mask = F.interpolate(mask, size=(h, w), mode="bilinear", align_corners=False)',
      'mask = F.interpolate(mask, size=(h, w), mode="nearest")', (MASKS_T,)),
    M("an outpaint's left and top swapped", MASKS, "    left, top = extend[0], extend[1]\n",
      "    top, left = extend[0], extend[1]\n", (MASKS_T,)),
    M("an outpaint's new area black instead of the stretched edges", MASKS, 'F.pad(original, pad, mode="replicate")',
      'F.pad(original, pad, mode="constant")', (MASKS_T,)),
    M("a canvas too narrow for the original is not refused", MASKS, "    if right < 0 or bottom < 0:\n",
      "    if right < 0 and bottom < 0:\n", (MASKS_T,)),
    M("mask_init keep starts the masked area from noise", MASKS,
      'fill = noise if how == "noise" else torch.where(new > 0, noise, base)', "fill = noise", (MASKS_T,)),
    M("mask_init blur blurs at another scale", MASKS, "BLUR_CELLS = 16", "BLUR_CELLS = 8", (MASKS_T,)),
    M("an outpaint's seam is feathered into the original", MASKS, "    seam = 1 - feather(held, init.mask_feather)",
      "    seam = feather(1 - held, init.mask_feather)", (MASKS_T,)),
    M("the mask of an edit is not feathered", MASKS,
      "inner = feather(mask_tensor(init.mask, orig_size, notice=notice), init.mask_feather)",
      "inner = mask_tensor(init.mask, orig_size, notice=notice)", (MASKS_T,)),
    M("an extension alone is no edit", "vqclip/optim/inits.py", "return bool(init.mask) or any(init.extend)", "return bool(init.mask)",
      (MASKS_T, EDIT_T)),
    M("the canvas ignores the left and top extension", "vqclip/optim/inits.py", "return [size[0] + left + right, size[1] + top + bottom]",
      "return [size[0] + right, size[1] + bottom]", (MASKS_T,)),
    M("a mask with an outpaint lies at the canvas's corner, not on the original", MASKS,
      "left, top = (init.extend[0], init.extend[1]) if extended else (0, 0)", "left, top = 0, 0", (MASKS_T,)),
    # --- the edit term and its wiring
    M("the gradient is not masked: cells outside the mask move", EDIT, "        return held + (z - held) * self.scale\n",
      "        return z\n", (EDIT_T,)),
    M("the original is not composited over the decoded image", EDIT,
      "        return composite(self.edit.base, image, self.edit.mask)\n", "        return image\n", (EDIT_T,)),
    M("no job wants the edit term", EDIT, "        return wants_edit(cfg.init)\n", "        return False\n", (EDIT_T,)),
    M("the edit composited before the hard palette snaps the image", REG,
      '    "palette": "vqclip.terms.palette:PaletteTerm",\n',
      '    "edit": "vqclip.terms.edit:EditTerm",\n    "palette": "vqclip.terms.palette:PaletteTerm",\n', (EDIT_T,)),
    M("the objective does not let the terms mask the parameters", OBJ, "            z = term.drawn(z, self.drawer)\n",
      "            pass\n", (EDIT_T,)),
    M("an outpaint's canvas is the size alone", OBJ, "size = canvas_size(cfg.size, cfg.init.extend)",
      "size = list(cfg.size)", (EDIT_T,)),
    M("mask_init is ignored: the masked area always keeps the image", STATE,
      "image = start_image(edit.base, edit.mask, edit.new, init.mask_init, rng)",
      'image = start_image(edit.base, edit.mask, edit.new, "keep", rng)', (EDIT_T,)),
    # --- checks, run folder, resume, API
    M("the largest canvas is refused", CHECKS, "    if max(w, h) > MAX_SIDE:\n", "    if max(w, h) >= MAX_SIDE:\n",
      (EDIT_T,)),
    M("an extension of 0 on a side is refused", CHECKS, "any(not isinstance(e, int) or e < 0 for e in i.extend)",
      "any(not isinstance(e, int) or e <= 0 for e in i.extend)", (EDIT_T,)),
    M("a negative extension is taken", CHECKS, "any(not isinstance(e, int) or e < 0 for e in i.extend)",
      "any(not isinstance(e, int) or e < -1 for e in i.extend)", (EDIT_T,)),
    M("a feather of 0 (a hard edge) is refused", CHECKS, "0 <= i.mask_feather <= MAX_SIDE",
      "0 < i.mask_feather <= MAX_SIDE", (EDIT_T,)),
    M("a mask without an init image is taken", CHECKS, "    if wants_edit(i) and not i.image:\n",
      "    if any(i.extend) and not i.image:\n", (EDIT_T,)),
    M("an all-black mask file fails only after the run folder is made", CHECKS,
      'if key == "init.mask" and open_rgb(path).convert("L").getextrema()[1] == 0:',
      'if key == "init.mask" and open_rgb(path).convert("L").getextrema()[1] < 0:', (EDIT_T,)),
    M("a zoom video takes a mask", RULES, '        _no_edit(cfg, "a zoom video")\n', "", (EDIT_T,)),
    M("a restyle takes an outpaint", RULES, '        _no_edit(cfg, "a restyle")\n', "", (EDIT_T,)),
    M("the mask is not kept in the run folder", PIPE, "            save_mask(given, cfg.init.mask)\n",
      "            pass\n", (EDIT_T,)),
    M("a moved run folder's mask is looked for where it was", JOBS,
      "if isinstance(mask, str) and mask and not Path(mask).is_file() and (folder / MASK_FILE).is_file():",
      "if False:", (EDIT_T,)),
    M("a resume of a moved edit is refused as another job", STATEFILE, '"output.progress", "init.mask"})',
      '"output.progress"})', (EDIT_T,)),
    M("the API's mask is dropped", API, '    return {**job, "init": {**init, "mask": path}}\n', "    return job\n",
      (EDIT_T,)),
    M("the API reads a tensor mask on another scale", API, "np.rint(np.clip(array, 0, 1) * 255)",
      "np.rint(np.clip(array, 0, 1) * 127)", (EDIT_T,)),
]
