"""Mutations of vqclip/tools/ (CLIP's other jobs as a Python API) and vqclip/measure/ (the textbook loop the speed and
GPU checks compare with): what a user would notice if it broke."""

from ._table import M

CLIPPING = "vqclip/tools/clipping.py"
T_CLIPPING = ("tests/test_clipping.py",)
TEXTBOOK, T_TEXTBOOK = "vqclip/measure/textbook.py", ("tests/test_perf_equivalence.py",)

MUTATIONS = [
    # --- CLIP's other jobs: which CLIPs, and how their answers are put together
    M("several CLIPs' scores summed, not averaged", CLIPPING,
      "return sum(score(clip, emb) for clip, emb in zip(clips, embs, strict=True)) / len(clips)",
      "return sum(score(clip, emb) for clip, emb in zip(clips, embs, strict=True))",
      ("tests/test_cli_clipjobs.py::test_several_clips_average_classify_and_score",)),
    M("score and rank list the worst first", CLIPPING, 'out = sorted(records, key=lambda r: -r["score"])',
      'out = sorted(records, key=lambda r: r["score"])', T_CLIPPING),
    M("ranks counted from 0", CLIPPING, 'r["rank"] = i + 1', 'r["rank"] = i', T_CLIPPING),
    M("--top ignored by score and rank", CLIPPING, '[: top or None]', '[:]', T_CLIPPING),
    M("classify's templates ignored", CLIPPING,
      "templates = check_templates(DEFAULT_TEMPLATES if templates is None else templates)",
      "templates = check_templates(DEFAULT_TEMPLATES)", T_CLIPPING),
    M("every run ranked against the first run's prompt", CLIPPING, "[runs[p] for p in kept]",
      "[runs[kept[0]]] * len(kept)", T_CLIPPING),
    M("two CLIPs given one pretrained: the second silently takes the default", CLIPPING,
      " or (len(models) > 1 and tags and len(tags) != len(models)):", ":", T_CLIPPING),
    # --- the textbook loop the tests' reference step, the benchmark and the GPU check compare vqclip with
    M("the textbook quantizer without its straight-through gradient", TEXTBOOK, "    return replace_grad(x_q, x)\n",
      "    return x_q\n", T_TEXTBOOK),
    M("the textbook clamp passes every gradient", TEXTBOOK,
      "return grad_in * (grad_in * (input - input.clamp(ctx.min, ctx.max)) >= 0), None, None",
      "return grad_in, None, None", T_TEXTBOOK),
    M("the textbook loss ignores the init weight", TEXTBOOK, "loss = loss + F.mse_loss(z, z_orig) * init_weight / 2",
      "loss = loss", T_TEXTBOOK),
    M("the textbook cutouts skip their noise", TEXTBOOK, "batch = batch + facs * torch.randn_like(batch)",
      "batch = batch", ("tests/test_measure.py",)),
    M("`python benchmarks/gpu_check.py --help` loads torch before it shows the options", "benchmarks/gpu_check.py",
      "    script_parser().parse_args()  # --help",
      "    import torch  # noqa: F401\n    script_parser().parse_args()  # --help", ("tests/test_gpu_check.py",)),
]
