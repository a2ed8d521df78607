"""`vqclip classify`, `search`, `score` and `rank`: CLIP's other jobs, with the same model options as `generate`."""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

from ..errors import VqclipError, reason
from ..files.images import read_png_json
from ..models.clipweights import clips_missing
from ..models.download import DownloadError
from ..models.presets import DEFAULT_CLIP, get_preset
from ..models.resolve import preset_clip, resolve_clip
from ..models.spec import ClipSpec, canonical_model
from ..nets.device import pick_device

log = logging.getLogger("vqclip")

RANK_IMAGE = "final.png"


# ---- shared options and model loading ---------------------------------------------------------------------------

def _positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _common(p: argparse.ArgumentParser, top_help: str) -> None:
    """Model, device, batching and output options every CLIP job takes."""
    g = p.add_argument_group("model")
    g.add_argument("--model", metavar="PRESET", help="model preset whose CLIP to use (see `vqclip models`), e.g. mini")
    g.add_argument("--clip-model", action="append", metavar="NAME_OR_JSON",
                   help="open_clip name (ViT-B-32) or architecture JSON; overrides the preset's CLIP; repeat it to "
                        "average several CLIPs (probabilities, scores and similarities are averaged over them)")
    g.add_argument("--clip-pretrained", action="append", metavar="TAG_OR_FILE",
                   help="open_clip pretrained tag or weights file, one per --clip-model ('none' = random weights)")
    g.add_argument("--device", default="auto", help="auto (cuda, else mps, else cpu), cpu, cuda, cuda:N or mps")
    o = p.add_argument_group("output")
    o.add_argument("--top", type=_positive_int, metavar="K", help=top_help)
    o.add_argument("--json", action="store_true", help="print JSON on stdout instead of a table")
    o.add_argument("--batch-size", type=_positive_int, default=32, metavar="N", help="images per CLIP batch")
    o.add_argument("--quiet", action="store_true", help="no progress bar or notices, only warnings and results")


def clip_specs(args: argparse.Namespace) -> list:
    """The CLIPs the options name (--model / --clip-model / --clip-pretrained; several --clip-model give several
    CLIPs, each with its own --clip-pretrained), resolved to what `load_clip` takes (`ClipFiles`)."""
    models, tags = [canonical_model(m) for m in args.clip_model or []], list(args.clip_pretrained or [])
    if len(tags) > max(len(models), 1) or (len(models) > 1 and tags and len(tags) != len(models)):
        raise VqclipError("--clip-pretrained: give one per --clip-model, in the same order")
    if not models:
        model, pretrained = preset_clip(get_preset(args.model)) if args.model else DEFAULT_CLIP
        pairs = [(model, tags[0] if tags else pretrained)]
    else:
        pairs = [(m, tags[i] if tags else (DEFAULT_CLIP[1] if ClipSpec.parse(m).form == "name" else None))
                 for i, m in enumerate(models)]
    return [resolve_clip(model, pretrained) for model, pretrained in pairs]


def preset_templates(args: argparse.Namespace) -> list[str]:
    """The prompt templates the preset's CLIP knows (the mini CLIP: its own captions only), or [] for the usual."""
    return list(get_preset(args.model).clip_templates) if args.model and not args.clip_model else []


def load_clips_for(args: argparse.Namespace) -> list:
    """The CLIP models the options name, on the chosen device (fetched first, one error naming every missing file)."""
    from ..nets.load import ModelCache  # torch comes with it: imported here so that --help is instant
    device = pick_device(args.device)
    specs = clip_specs(args)
    missing = clips_missing([(c.model, c.pretrained) for c in specs if c.like is None])
    if missing:
        raise DownloadError(missing)
    cache, clips = ModelCache(), []
    for files in specs:
        clips.append(cache.clip(files, device))
        if args.model and not args.clip_model:
            log.info("CLIP of preset %s (%s) on %s", args.model, Path(files.model).name, device)
        else:
            log.info("CLIP %s on %s", clips[-1].name, device)
    return clips


def _read_lines(path: str, what: str) -> list[str]:
    """Non-empty, non-comment lines of a text file."""

    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise VqclipError(f"{path}: cannot read the {what} file ({exc.__class__.__name__}); give a UTF-8 text file "
                          "with one entry per line") from None
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def _table(headers: list[str], rows: list[list[str]], right: set[int]) -> str:
    """Rows as aligned text columns (columns in `right` right-aligned)."""
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]
    fmt = lambda cells: "  ".join(c.rjust(w) if i in right else c.ljust(w)  # noqa: E731
                                  for i, (c, w) in enumerate(zip(cells, widths))).rstrip()
    return "\n".join([fmt(headers)] + [fmt(r) for r in rows])


def _emit(args: argparse.Namespace, data, headers: list[str], rows: list[list[str]], right: set[int]) -> None:
    """Print JSON (--json) or the table on stdout."""
    if args.json:
        print(json.dumps(data, indent=2, ensure_ascii=False))
    elif rows:
        print(_table(headers, rows, right))

def _embed(args, clips, paths):
    """(readable paths, one embedding matrix per CLIP) of image files, skipping bad ones (warned about once); an
    error when none is readable."""
    from ..tools.clipjobs import embed_image_files  # torch: here for a fast --help
    kept, embs = list(paths), []
    for clip in clips:
        got, emb = embed_image_files(clip, kept, args.batch_size, progress=not args.quiet)
        if not got:
            raise VqclipError(f"none of the {len(paths)} images could be read; check the files")
        if len(got) != len(kept):  # a file that became unreadable meanwhile drops out for every CLIP
            row = {p: i for i, p in enumerate(kept)}
            embs = [e[[row[p] for p in got]] for e in embs]
        kept, embs = got, embs + [emb]
    return kept, embs


def _averaged(clips, embs, score):
    """`score(clip, its embeddings)` averaged over several CLIPs: how they vote on probabilities and scores."""
    return sum(score(clip, emb) for clip, emb in zip(clips, embs, strict=True)) / len(clips)


# ---- classify -------------------------------------------------------------------------------------------------------

def run_classify(args: argparse.Namespace) -> int:
    """Zero-shot classification of each image among the labels."""
    from ..tools.clipjobs import (DEFAULT_TEMPLATES, check_templates,  # torch: here for a fast --help
                                  classify_embeddings, expand_image_args, logit_scale, text_classifier)
    if args.labels_file:
        labels = _read_lines(args.labels_file, "labels")
    else:
        labels = [x.strip() for x in (args.labels or "").split(",") if x.strip()]
    if len(labels) < 2:
        raise VqclipError("classify needs at least two labels: --labels 'cat,dog,human' or --labels-file FILE")
    paths = expand_image_args(args.images)  # a missing file fails before any notice
    if args.templates_file:
        templates = _read_lines(args.templates_file, "templates")
    elif args.templates is not None:
        templates = [t.strip() for t in args.templates.split(";") if t.strip()]
    elif preset_templates(args):
        templates = preset_templates(args)
        log.info("the '%s' CLIP knows only its own caption grammar: labels are used as written, e.g. 'a red circle' "
                 "(--templates '%s')", args.model, ";".join(templates))
    else:
        templates = list(DEFAULT_TEMPLATES)
    templates = check_templates(templates)
    clips = load_clips_for(args)
    kept, embs = _embed(args, clips, paths)
    probs = _averaged(clips, embs, lambda clip, emb: classify_embeddings(
        emb, text_classifier(clip, labels, templates).cpu(), logit_scale(clip)))
    k = min(args.top or len(labels), len(labels))
    results = []
    for path, row in zip(kept, probs.tolist()):
        order = sorted(range(len(labels)), key=lambda j: -row[j])[:k]
        results.append({"image": str(path), "label": labels[order[0]], "probs": dict(zip(labels, row)),
                        "top": [[labels[j], row[j]] for j in order]})
    if k == len(labels) and len(labels) <= 8:  # a full matrix fits: one column per label
        headers = ["image", "best"] + labels
        rows = [[r["image"], r["label"]] + [f"{r['probs'][lab]:.3f}" for lab in labels] for r in results]
        right = set(range(2, len(headers)))
    else:
        headers = ["image"] + [h for i in range(k) for h in (f"#{i + 1}", "p")]
        rows = [[r["image"]] + [c for lab, p in r["top"] for c in (lab, f"{p:.3f}")] for r in results]
        right = set(range(2, len(headers), 2))
    _emit(args, results, headers, rows, right)
    return 0


# ---- search -----------------------------------------------------------------------------------------------------

def run_search(args: argparse.Namespace) -> int:
    """Rank a folder's images by similarity to a text or an image, using the folder's embedding cache."""
    from ..tools.clipjobs import IMAGE_SUFFIXES, embed_image_files, load_image_file  # torch: here for a fast --help
    from ..tools.search import ImageIndex, search_all  # torch: here for a fast --help
    if (args.query is None) == (args.image is None):
        raise VqclipError("search needs exactly one query: a text (vqclip search FOLDER 'a red car') or --image FILE")
    if args.query is not None and not args.query.strip():
        raise VqclipError("search: the query text is empty; give a text (vqclip search FOLDER 'a red car') or --image")
    if args.image is not None and not Path(args.image).is_file():
        raise VqclipError(f"{args.image}: no such query image")
    if not args.folder.is_dir():  # both checked before any model loads or any image is embedded
        why = "is a file, not a folder" if args.folder.exists() else "no such folder"
        raise VqclipError(f"{args.folder}: {why}; give a folder of images")
    if args.image is not None:
        try:
            load_image_file(args.image, 8)
        except Exception as exc:  # PIL raises anything from OSError to DecompressionBombError on a bad file
            raise VqclipError(f"{args.image}: the query image cannot be read ({reason(exc)})") from None
    indexes, queries = [], []
    for clip in load_clips_for(args):  # one cached index per CLIP, in the same file
        index = ImageIndex(args.folder, clip)
        if args.rebuild:
            index.entries.clear()
            index.vectors.clear()
        t0 = time.perf_counter()
        index.update(batch_size=args.batch_size, progress=not args.quiet)
        wall = time.perf_counter() - t0
        if not len(index):
            skipped = f" ({len(index.skipped)} could not be read)" if index.skipped else ""
            raise VqclipError(f"{args.folder}: no readable images under it{skipped}; give a folder that holds "
                              f"{', '.join(sorted(s.lstrip('.') for s in IMAGE_SUFFIXES))} files")
        if index.embedded:
            log.info("indexed %d images: %d embedded in %.1fs (%.1f images/s), %d from the cache, %d skipped",
                     len(index), index.embedded, wall, index.embedded / max(wall, 1e-9),
                     len(index) - index.embedded, len(index.skipped))
        if args.image is not None:
            kept, emb = embed_image_files(clip, [args.image], 1)
            if not kept:
                raise VqclipError(f"{args.image}: the query image cannot be read")
            queries.append(emb[0])
        else:
            queries.append(clip.encode_text([args.query])[0].cpu())
        indexes.append(index)
    label = f"image:{args.image}" if args.image is not None else args.query
    hits = search_all(indexes, queries, args.top or 10)
    data = {"query": label, "folder": str(args.folder), "indexed": len(indexes[0]),
            "embedded": sum(i.embedded for i in indexes), "skipped": indexes[0].skipped,
            "results": [{"rank": i + 1, "path": str(p), "score": s}
                                                  for i, (p, s) in enumerate(hits)]}
    rows = [[str(i + 1), f"{s:.4f}", str(p)] for i, (p, s) in enumerate(hits)]
    _emit(args, data, ["rank", "score", "image"], rows, {0, 1})
    return 0


# ---- score and rank ---------------------------------------------------------------------------------------------

def _ranked(records: list[dict], top: int | None) -> list[dict]:
    """Records sorted by score, best first, numbered, cut to `top`."""
    out = sorted(records, key=lambda r: -r["score"])[: top or None]
    for i, r in enumerate(out):
        r["rank"] = i + 1
    return out


def run_score(args: argparse.Namespace) -> int:
    """CLIP similarity of each image to one prompt, best first."""
    from ..tools.clipjobs import expand_image_args, parse_score_prompt, prompt_scores  # torch: here for a fast --help
    parse_score_prompt(args.prompt)  # a malformed prompt fails before any model is loaded
    paths = expand_image_args(args.images)
    clips = load_clips_for(args)
    kept, embs = _embed(args, clips, paths)
    scores = _averaged(clips, embs, lambda clip, emb: prompt_scores(clip, emb, [args.prompt] * len(kept)))
    records = _ranked([{"image": str(p), "score": float(s)} for p, s in zip(kept, scores)], args.top)
    rows = [[str(r["rank"]), f"{r['score']:.4f}", r["image"]] for r in records]
    _emit(args, {"prompt": args.prompt, "results": records}, ["rank", "score", "image"], rows, {0, 1})
    return 0


def read_run_prompt(path: Path) -> str | None:
    """The text prompt a vqclip run recorded in its PNG (`vqclip` text chunk, JSON with 'prompt'), or None."""
    from ..tools.clipjobs import parse_score_prompt  # torch: here for a fast --help

    try:
        prompt = read_png_json(path).get("prompt")
    except VqclipError as exc:
        log.warning("skipping %s", exc)
        return None
    if not isinstance(prompt, str) or not prompt.strip():
        log.warning("skipping %s: no vqclip run metadata with a text prompt", path)
        return None
    try:
        parse_score_prompt(prompt)
    except VqclipError as exc:
        log.warning("skipping %s: %s", path, exc)
        return None
    return prompt


def run_rank(args: argparse.Namespace) -> int:
    """Rank runs under a folder by how well each final.png matches its own recorded prompt."""
    from ..tools.clipjobs import prompt_scores, scan_images  # torch: here for a fast --help
    finals = [p for p in scan_images(args.folder) if p.name == RANK_IMAGE]
    if not finals:
        raise VqclipError(f"{args.folder}: no runs found (no {RANK_IMAGE} below it); give an outputs folder")
    runs: dict[Path, str] = {}
    for path in finals:
        prompt = read_run_prompt(path)
        if prompt is not None:
            runs[path] = prompt
    if not runs:
        raise VqclipError(f"{args.folder}: none of the {len(finals)} runs has a readable prompt in its {RANK_IMAGE}")
    clips = load_clips_for(args)
    kept, embs = _embed(args, clips, list(runs))
    scores = _averaged(clips, embs, lambda clip, emb: prompt_scores(clip, emb, [runs[p] for p in kept]))
    records = _ranked([{"run": str(p.parent), "image": str(p), "prompt": runs[p], "score": float(s)}
                       for p, s in zip(kept, scores)], args.top)
    rows = [[str(r["rank"]), f"{r['score']:.4f}", r["run"], r["prompt"][:60]] for r in records]
    _emit(args, records, ["rank", "score", "run", "prompt"], rows, {0, 1})
    return 0


# ---- registration -----------------------------------------------------------------------------------------------

def register(subparsers) -> None:
    """Add the classify, search, score and rank subcommands."""
    p = subparsers.add_parser("classify", help="zero-shot classify images among text labels",
                              description="Zero-shot classification: the probability of each label for each image.")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files or folders of images")
    lab = p.add_mutually_exclusive_group(required=True)
    lab.add_argument("--labels", help="comma-separated labels, e.g. 'cat,dog,human'")
    lab.add_argument("--labels-file", metavar="FILE", help="labels, one per line (# starts a comment line)")
    tpl = p.add_mutually_exclusive_group()
    tpl.add_argument("--templates", metavar="T1;T2",
                     help="';'-separated prompt templates with {} for the label, averaged ('{}' = the bare label); "
                          "default: 'a photo of a {}.' and 5 more ('{}' for the mini preset)")
    tpl.add_argument("--templates-file", metavar="FILE", help="prompt templates, one per line (# comment lines)")
    _common(p, "show the K most likely labels per image (default: all)")
    p.set_defaults(func=run_classify)

    p = subparsers.add_parser("search", help="find images in a folder by text or by an example image",
                              description="Rank the images under FOLDER (recursively) by similarity to a text or "
                                          "an image. Embeddings are cached in vqclip's cache (~/.cache/vqclip/search, or "
                                          "$VQCLIP_HOME/search), not in FOLDER.")
    p.add_argument("folder", type=Path, metavar="FOLDER")
    p.add_argument("query", nargs="?", metavar="TEXT", help="what to look for, e.g. 'a red car'")
    p.add_argument("--image", metavar="QUERY", help="search with this image instead of a text")
    p.add_argument("--rebuild", action="store_true", help="ignore the cached embeddings and embed every image again")
    _common(p, "show the K best matches (default: 10)")
    p.set_defaults(func=run_search)

    p = subparsers.add_parser("score", help="CLIP similarity of images to a prompt, best first",
                              description="Score images against a prompt (cosine similarity; 'a:1|b:-0.5' "
                                          "prompts combine their parts by weight).")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files or folders of images")
    p.add_argument("--prompt", required=True, help="the text to score against")
    _common(p, "show the K best images (default: all)")
    p.set_defaults(func=run_score)

    p = subparsers.add_parser("rank", help="rank generated runs by how well final.png matches its prompt",
                              description=f"Find every {RANK_IMAGE} under FOLDER and rank the runs by the CLIP "
                                          "similarity of the image to the prompt recorded in it.")
    p.add_argument("folder", type=Path, metavar="FOLDER", help="an outputs folder of runs")
    _common(p, "show the K best runs (default: all)")
    p.set_defaults(func=run_rank)
