"""Mutations of vqclip/ui/a1111.py, the AUTOMATIC1111 API: what a client of that API would notice if it broke."""

from ._table import M

A1111 = "vqclip/ui/a1111.py"
T = ("tests/test_a1111.py",)

MUTATIONS = [
    M("seed -1 is sent to the job as seed -1, not drawn", A1111,
      '"seed": None if seed == -1 else seed', '"seed": seed', T),
    M("exactly the largest batch (batch_size x n_iter) is refused", A1111,
      "if n > MAX_IMAGES:", "if n >= MAX_IMAGES:", T),
    M("an oversized base64 image is decoded past its bound", A1111,
      "if len(value) > (cap + 2) // 3 * 4:", "if len(value) > (cap + 2) // 3 * 4 + 4:", T),
    M("img2img runs every step whatever denoising_strength says", A1111,
      'job["steps"] = max(1, round(job["steps"] * strength))', 'job["steps"] = job["steps"]', T),
    M("img2img ignores the mask: the kept part changes too", A1111,
      'init["mask"] = f"upload:{mask}"', 'pass', T),
    M("interrupt does not stop the run", A1111,
      "queue.cancel(job.id)  # stopped", "pass  # stopped", T),
    M("a POST to options switches to any name, unchecked", A1111,
      'options["sd_model_checkpoint"] = preset_name(body["sd_model_checkpoint"])',
      'options["sd_model_checkpoint"] = body["sd_model_checkpoint"]', T),
    M("the ignored override_settings are not listed in info", A1111,
      'if k != "sd_model_checkpoint")', 'if False)', T),
    M("the negative prompt is dropped", A1111,
      'job["negative"] = [negative]', 'pass', T),
    M("steps 0 is accepted (a run of no steps)", A1111,
      '"steps": integer(body, "steps", 20, 1)', '"steps": integer(body, "steps", 20, 0)', T),
    M("inpainting_mask_invert is ignored: the part to keep changes", A1111,
      'if body.get("inpainting_mask_invert"):', "if False:", T),
    M("info reports the size asked for, not the size made (rounded to the image model's factor)", A1111,
      "width, height = sizes[0] if sizes else (None, None)",
      'width, height = body.get("width"), body.get("height")', T),
    M("a batch's images come back in their folders' name order (seed=10 before seed=9)", A1111,
      "folders = [job.dir / m.name for m in job.plan.members]",
      "folders = sorted(job.dir / m.name for m in job.plan.members)", T),
    M("img2img's mask_blur is ignored: the mask fades over vqclip's default 8 pixels into the kept part", A1111,
      'init["mask_feather"] = integer(body, "mask_blur", 4, 0, 256)', "pass", T),
    M("the request body may be one byte over its cap", A1111,
      "body = await read_body(request, body_cap)", "body = await read_body(request, body_cap + 1)", T),
    M("progress reports the share of the steps left, not done", A1111,
      '"progress": job.step / job.total if job.total', '"progress": 1 - job.step / job.total if job.total', T),
    M("a request no checking process is free for is a 400, not a 503 to retry", A1111,
      "return fail(503, str(exc))", "return fail(400, str(exc))", T),
]
