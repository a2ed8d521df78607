"""`vqclip classify`, `search`, `score` and `rank`: CLIP's other jobs, with the same model options as `generate`. This
module only parses their options; the jobs are `vqclip.tools.clipping`'s."""

from __future__ import annotations

import argparse
import sys
import json
from pathlib import Path

from ..errors import VqclipError
from ..files.runfolder import FINAL_FILE as RANK_IMAGE


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


def clip_choice(args: argparse.Namespace):
    """The CLIPs the options name (--model / --clip-model / --clip-pretrained / --device) as the library's
    `ClipChoice`."""
    from ..tools.clipping import ClipChoice  # torch: here for a fast --help
    return ClipChoice(args.model, tuple(args.clip_model or ()), tuple(args.clip_pretrained or ()), args.device)


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

# ---- classify -------------------------------------------------------------------------------------------------------

def run_classify(args: argparse.Namespace) -> int:
    """Zero-shot classification of each image among the labels."""
    from ..tools.clipping import classify  # torch: here for a fast --help
    if args.labels_file:
        labels = _read_lines(args.labels_file, "labels")
    else:
        labels = [x.strip() for x in (args.labels or "").split(",") if x.strip()]
    if len(labels) < 2:
        raise VqclipError("classify needs at least two labels: --labels 'cat,dog,human' or --labels-file FILE")
    if args.templates_file:
        templates = _read_lines(args.templates_file, "templates")
    elif args.templates is not None:
        templates = [t.strip() for t in args.templates.split(";") if t.strip()]
    else:
        templates = None  # the preset CLIP's own, else the usual ones
    results = classify(args.images, labels, templates, clip_choice(args), args.batch_size, args.top,
                       progress=not args.quiet)
    k = min(args.top or len(labels), len(labels))
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
    from ..tools.clipping import search  # torch: here for a fast --help
    data = search(args.folder, args.query, args.image, clip_choice(args), args.top or 10, args.rebuild,
                  args.batch_size, progress=not args.quiet)
    rows = [[str(r["rank"]), f"{r['score']:.4f}", r["path"]] for r in data["results"]]
    _emit(args, data, ["rank", "score", "image"], rows, {0, 1})
    return 0


# ---- score and rank ---------------------------------------------------------------------------------------------

def run_score(args: argparse.Namespace) -> int:
    """CLIP similarity of each image to one prompt, best first."""
    from ..tools.clipping import score_images  # torch: here for a fast --help
    records = score_images(args.images, args.prompt, clip_choice(args), args.batch_size, args.top,
                           progress=not args.quiet)
    rows = [[str(r["rank"]), f"{r['score']:.4f}", r["image"]] for r in records]
    _emit(args, {"prompt": args.prompt, "results": records}, ["rank", "score", "image"], rows, {0, 1})
    return 0


def run_rank(args: argparse.Namespace) -> int:
    """Rank runs under a folder by how well each final.png matches its own recorded prompt."""
    from ..tools.clipping import rank_runs  # torch: here for a fast --help
    records = rank_runs(args.folder, clip_choice(args), args.batch_size, args.top, progress=not args.quiet)
    if records and "by" in records[0] and not args.quiet:
        print(f"ranked by the runs' held-out judge, {records[0]['by']} (scores.json)", file=sys.stderr)
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
