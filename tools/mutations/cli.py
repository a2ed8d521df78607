"""Mutations of the faces: vqclip/api.py (the Python API) and vqclip/cli/* (the commands and their options): what a
user would notice if it broke, an exit code, a one-line error at its boundary, an option that no longer reaches its
key, an argument of the API ignored."""

from ._table import M

API, ANIMATE, BENCH, CLIPJOBS, GENERATE = ("vqclip/api.py", "vqclip/cli/animate.py", "vqclip/cli/bench.py",
                                           "vqclip/cli/clipjobs.py", "vqclip/cli/generate.py")
MODELS, OPTIONS, DOC, UI, UPSCALE = ("vqclip/cli/models.py", "vqclip/cli/options.py", "vqclip/cli/options_doc.py",
                                     "vqclip/cli/ui.py", "vqclip/cli/upscale.py")
T_API, T_API_ALL = ("tests/test_api_rules.py",), ("tests/test_api.py",)
T_RULES, T_SERVE, T_BATCH = ("tests/test_cli_rules.py",), ("tests/test_cli_serve.py",), \
    ("tests/test_cli_generate_batch.py",)
T_MODELS = ("tests/test_cli_models.py",)
T_DOC = ("tests/test_cli_help.py::test_docs_options_lists_every_key_and_is_up_to_date",)

MUTATIONS = [
    # --- api.py: the Pipeline's arguments
    M("a Pipeline call with candidates.keep silently makes only the first image", API,
      "if cfg.n > 1 or cfg.candidates.keep > 1:", "if cfg.n > 1:", T_API),
    M("Pipeline.run of one job with n: returns only its first image", API,
      "single = len(plans) == 1 and not isinstance(plans[0], Batch)", "single = len(plans) == 1", T_API),
    M("a Pipeline call shows a progress bar nobody asked for", API,
      'quiet = [("Pipeline", {"output": {"progress": False}})]', 'quiet = [("Pipeline", {"output": {}})]', T_API),
    M("a pipeline of missing model files is made, failing only at its first call", API,
      "        pipe = cls([(\"files\", layer)], device)\n        pipe.models()\n",
      "        pipe = cls([(\"files\", layer)], device)\n", T_API),
    M("a stream's stop() does not end the run", API, "        self._flag.set()\n", "        pass\n", T_API_ALL),
    M("a stream's run that fails ends the iteration as if it had finished", API,
      "            self._error = exc\n", "            pass\n", T_API_ALL),
    # --- cli/animate.py: zoom, restyle, resume
    M("zoom --frames 1 is taken (a video of one frame, zero steps)", ANIMATE, "if args.frames < 2:",
      "if args.frames < 1:", T_RULES),
    M("zoom --frames N makes one frame more than asked", ANIMATE, '"steps": (args.frames - 1) * cfg.animation.every',
      '"steps": args.frames * cfg.animation.every', T_RULES),
    M("restyle --size keeps the video's aspect instead of that exact size", ANIMATE,
      "        restyle[\"keep_aspect\"] = False\n", "        pass\n", T_RULES),
    M("restyle --steps sets the whole run's steps instead of steps per frame", ANIMATE,
      'restyle["steps_per_frame"] = cli.pop("steps")', 'cli["steps"] = cli.pop("steps")', T_RULES),
    M("a resumed run stopped again by Ctrl-C exits 0", ANIMATE,
      '    _report(run, f"{run.result.steps} steps")\n    return 130 if run.interrupted else 0',
      '    _report(run, f"{run.result.steps} steps")\n    return 0', T_RULES),
    M("a stopped zoom or restyle exits 0", ANIMATE,
      "    _report(run, frames)\n    return 130 if run.interrupted else 0",
      "    _report(run, frames)\n    return 0", T_RULES),
    # --- cli/bench.py
    M("the GPU check runs with a budget of 0 seconds", BENCH, "if args.budget <= 0:", "if args.budget < 0:", T_RULES),
    M("bench --no-flops still counts the FLOPs", BENCH, "flops=not args.no_flops", "flops=True", T_RULES),
    M("bench --json prints the table", BENCH,
      "print(json.dumps(result.to_dict()) if args.json else format_result(result))",
      "print(format_result(result))", T_RULES),
    M("bench --micro-batch is ignored", BENCH, "micro_batch=args.micro_batch", "micro_batch=None", T_RULES),
    # --- cli/clipjobs.py
    M("--top 0 is taken", CLIPJOBS, "    if value < 1:\n", "    if value < 0:\n", T_RULES),
    M("classify with one label is taken (every probability 1)", CLIPJOBS, "if len(labels) < 2:", "if len(labels) < 1:",
      T_RULES),
    M("a comment line of a labels file becomes a label", CLIPJOBS,
      ' and not line.lstrip().startswith("#")]', "]", T_RULES),
    M("eight labels show as the top-k table instead of one column each", CLIPJOBS, "len(labels) <= 8:",
      "len(labels) < 8:", T_RULES),
    M("search shows 5 matches unless told", CLIPJOBS, "args.top or 10", "args.top or 5", T_RULES),
    # --- cli/generate.py
    M("generate with only an image prompt is refused", GENERATE,
      " and not args.from_png and not args.opt_image_prompts:", " and not args.from_png:", T_RULES),
    M("a stopped image of generate exits 0", GENERATE, "    _report(run)\n    return 130 if run.interrupted else 0",
      "    _report(run)\n    return 0", T_RULES),
    M("a batch of generate --n stopped by Ctrl-C exits 0", GENERATE,
      "            return 130 if runs and runs[-1].interrupted else 0", "            return 0", T_BATCH),
    M("generate --n runs its batch over finished images again on a rerun", GENERATE,
      "            runs = run_plan(placed, run_job, cache=ModelCache(), stop=stop, report=_report)",
      "            from ..runs.plan import NEW\n"
      "            for job in (j for p in placed for j in p.members):\n"
      "                job.state = NEW\n"
      "            runs = run_plan(placed, run_job, cache=ModelCache(), stop=stop, report=_report)", T_BATCH),
    M("vqclip run --dry-run runs the jobs", GENERATE,
      "            print(\"\\n\".join(describe(item)))\n        return 0",
      "            print(\"\\n\".join(describe(item)))", T_RULES),
    # --- cli/options.py: each flag to its key
    M("a flag not given overrides the YAML's value with false (--tile, --palette-hard)", OPTIONS,
      "if value is None or value is False:", "if value is None:", T_RULES),
    M("--no-video turns the video on", OPTIONS, '        if o.cli_get("negate"):\n            value = False\n',
      '        if o.cli_get("negate"):\n            value = True\n', T_RULES),
    M("--set with an index reaches into a list's text", OPTIONS, "if any(k.isdigit() for k in keys):", "if False:",
      T_RULES),
    M("--set =5 sets a key with an empty name", OPTIONS, "if not eq or not key.strip():", "if not eq:", T_RULES),
    M("--clip-model without --clip-pretrained takes the preset's weights", OPTIONS,
      'item = {first: given[first][i], "pretrained": None}', "item = {first: given[first][i]}", T_RULES),
    # --- cli/options_doc.py: docs/options.md from the fields
    M("docs/options.md breaks its table at the prompt syntax's bar", DOC, 'what = what.replace("|", "\\\\|")',
      "what = what", T_DOC),
    M("docs/options.md shows an empty default as an empty cell", DOC, "shown = _shown(o.default) or '\"\"'",
      "shown = _shown(o.default)", T_DOC),
    M("docs/options.md leaves out the allowed values", DOC,
      'what = o.help + (f" ({\', \'.join(o.choices)})" if o.choices else "")', "what = o.help",
      T_DOC),
    # --- cli/ui.py
    M("vqclip ui on localhost warns that others can reach it", UI, '    if host == "localhost":\n        return True',
      '    if host == "localhost":\n        return False', T_SERVE),
    M("vqclip ui --port 65535 is refused", UI, "if not 0 <= args.port <= 65535:", "if not 0 <= args.port < 65535:",
      T_SERVE),
    M("vqclip ui --outputs naming a file is a traceback", UI, "if outputs.exists() and not outputs.is_dir():",
      "if False:", T_SERVE),
    M("vqclip ui --host ::1 cannot listen (an IPv4 socket)", UI,
      'family = socket.AF_INET6 if ":" in args.host else socket.AF_INET', "family = socket.AF_INET", T_SERVE),
    M("vqclip ui on 0.0.0.0 says nothing of who can reach it", UI,
      "    if not loopback(args.host):\n        log.warning",
      "    if False:\n        log.warning", T_SERVE),
    # --- cli/upscale.py
    M("upscale --scale 0 is taken", UPSCALE, "if args.scale is not None and args.scale < 1:",
      "if args.scale is not None and args.scale < 0:", T_SERVE),
    M("upscale --tile 31 is taken", UPSCALE, "if args.tile != 0 and args.tile < 32:",
      "if args.tile != 0 and args.tile < 31:",
      T_SERVE),
    M("upscale overwrites an earlier result without --force", UPSCALE,
      "clash = [str(t) for t in targets if t.exists()] if not args.force else []", "clash = []", T_SERVE),
    M("upscale writes two images to one file", UPSCALE, "if len(set(targets)) != len(targets):", "if False:", T_SERVE),
    M("an upscaled vqclip PNG loses its job (--from no longer works on it)", UPSCALE,
      "            metadata = read_png_json(image)  #", "            metadata = None  #", T_SERVE),
    # --- cli/models.py
    M("models --timeout 0 is taken", MODELS, "if not 0 < timeout < float(\"inf\"):",
      "if not 0 <= timeout < float(\"inf\"):", T_RULES),
    M("a preset with part of its files shows as not downloaded", MODELS,
      'return "partial" if any(present) or partial else "no"', 'return "no"', T_MODELS),
    M("models verify exits 0 with a corrupt file", MODELS, "    if corrupt:\n        raise",
      "    if False:\n        raise",
      T_MODELS),
    M("models remove of the built-in mini deletes the package's files", MODELS,
      "    if preset.embedded:\n        raise VqclipError(f\"'{preset.name}' is built into vqclip",
      "    if False:\n        raise VqclipError(f\"'{preset.name}' is built into vqclip", T_MODELS),
]
