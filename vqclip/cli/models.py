"""`vqclip models`: list the model presets, download them ahead of time, re-check the files on disk."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from ..errors import VqclipError
from ..models.clipweights import fetch_clip, hand_placed_clip
from ..models.download import DownloadError, fetch, human_size
from ..models.integrity import CorruptFileError, Manifest, verify_file
from ..models.presets import (DEFAULT_PRESET, MANIFEST_NAME, Preset, get_preset, home, list_presets, model_folder)
from ..models.resolve import preset_paths


def register(subparsers) -> None:
    """Add `vqclip models [list|download|verify]`."""
    common = argparse.ArgumentParser(add_help=False)
    # SUPPRESS: the option may be given before or after the action without one level resetting the other
    common.add_argument("--home", metavar="DIR", default=argparse.SUPPRESS,
                        help="where models live (default: $VQCLIP_HOME, else ./checkpoints)")
    common.add_argument("--presets", metavar="FILE", default=argparse.SUPPRESS,
                        help="an extra YAML file of user presets (also read: <home>/presets.yaml, $VQCLIP_PRESETS)")
    parser = subparsers.add_parser(
        "models", parents=[common], help="list, download and verify model presets",
        description="Model presets: named VQGAN files plus a default CLIP. Without an action, lists them.")
    actions = parser.add_subparsers(dest="models_action", metavar="ACTION")
    actions.add_parser("list", parents=[common], help="list presets: what they are, size, whether on disk")
    dl = actions.add_parser("download", parents=[common], help="fetch presets ahead of time (resumes, uses mirrors)")
    dl.add_argument("names", nargs="+", metavar="NAME", help="preset names (see `vqclip models`)")
    dl.add_argument("--skip-clip", action="store_true", help="fetch the VQGAN files only, not the CLIP weights")
    dl.add_argument("--force", action="store_true", help="download again even when the files are on disk")
    dl.add_argument("--timeout", type=float, default=30.0, metavar="S",
                    help="give up on a host after S seconds without data and try the next mirror")
    dl.add_argument("--no-progress", action="store_true", help="no progress bars")
    vf = actions.add_parser("verify", parents=[common], help="re-hash files on disk: ok, corrupt or missing")
    vf.add_argument("names", nargs="*", metavar="NAME", help="presets to check (default: every preset on disk)")
    parser.set_defaults(func=run)


def _home(args) -> Path:
    """The home directory chosen by --home, else the default."""
    given = getattr(args, "home", None)
    return model_folder(Path(given).expanduser().absolute(), "--home") if given else home()


def run(args) -> int:
    """Dispatch `vqclip models` to its action; the exit code."""
    timeout = getattr(args, "timeout", 30.0)
    if not 0 < timeout < float("inf"):
        raise VqclipError(f"--timeout: must be a number of seconds > 0, got {timeout}")
    home_dir, presets_file = _home(args), getattr(args, "presets", None)
    action = getattr(args, "models_action", None) or "list"
    if action == "download":
        return _download(args, home_dir, presets_file)
    if action == "verify":
        return _verify(args.names, home_dir, presets_file)
    return _list(home_dir, presets_file)


def _disk_state(preset: Preset, home_dir: Path) -> str:
    """'yes', 'partial', 'no' (downloaded presets) or 'built-in'/'missing' (embedded), without hashing."""
    paths = preset_paths(preset, home_dir)
    present = [p.is_file() for p in paths]
    if preset.embedded:
        return "built-in" if all(present) else "missing"
    if all(present):
        return "yes"
    partial = any(p.with_name(p.name + ".part").is_file() for p in paths)
    return "partial" if any(present) or partial else "no"


def _size(preset: Preset) -> str:
    """Download size for display: exact when pinned, '~' when approximate, '?' when unknown."""
    if preset.embedded:
        sizes = [p.stat().st_size for p in preset.folder().glob("*") if p.is_file()]
        return human_size(sum(sizes)) if sizes else "?"
    total = preset.approx_size
    exact = all(f.size is not None for f in preset.files)
    return "?" if total is None else ("" if exact else "~") + human_size(total)


def _table(rows: list[list[str]], width: int) -> list[str]:
    """Rows as left-aligned columns; the last column is cut to fit `width`."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    lines = []
    for row in rows:
        head = "  ".join(cell.ljust(w) for cell, w in zip(row, widths))
        room = max(width - len(head) - 2, 24)
        last = row[-1] if len(row[-1]) <= room else row[-1][: room - 3] + "..."
        lines.append(f"{head}  {last}".rstrip())
    return lines


def _list(home_dir: Path, presets_file) -> int:
    """Print the presets as an aligned table."""
    presets = list_presets(home=home_dir, presets_file=presets_file)
    rows = [["NAME", "SIZE", "ON DISK", "CLIP", "WHAT IT IS"]]
    for p in presets.values():
        clip = p.clip_model if p.embedded else f"{p.clip_model} ({p.clip_pretrained or 'random'})"
        name = p.name + (" *" if p.name == DEFAULT_PRESET else "")
        rows.append([name, _size(p), _disk_state(p, home_dir), "embedded" if p.embedded else clip, p.description])
    width = shutil.get_terminal_size((100, 24)).columns
    print("\n".join(_table(rows, width)))
    print(f"\n* default.  Home: {home_dir} (set VQCLIP_HOME or --home to move it).")
    users = sorted({p.origin for p in presets.values() if p.origin != "built-in"})
    if users:
        print("User presets from: " + ", ".join(users))
    print("Fetch ahead of time: vqclip models download NAME   Re-check files: vqclip models verify")
    return 0


def _download(args, home_dir: Path, presets_file) -> int:
    """Fetch each named preset's VQGAN files (and CLIP weights unless --skip-clip); one error lists all failures."""
    presets = [get_preset(name, home=home_dir, presets_file=presets_file) for name in args.names]
    manifest = Manifest(home_dir / MANIFEST_NAME)
    problems = []
    for preset in presets:
        if preset.embedded:
            state = _disk_state(preset, home_dir)
            if state != "built-in":
                raise VqclipError(f"the embedded '{preset.name}' model is missing from {preset.folder()}; reinstall "
                                  "vqclip")
            print(f"{preset.name}: built in, nothing to download")
            continue
        failed = len(problems)
        for spec in preset.files:
            try:
                fetch(spec, home_dir, progress=not args.no_progress, timeout=args.timeout, manifest=manifest,
                      force=args.force)
            except DownloadError as exc:
                problems.extend(exc.missing)
        if not args.skip_clip and preset.clip_pretrained:
            if hand_placed_clip(preset.clip_model, preset.clip_pretrained, home_dir) is None:
                try:
                    fetch_clip(preset.clip_model, preset.clip_pretrained, home_dir)
                except DownloadError as exc:
                    problems.extend(exc.missing)
        if len(problems) == failed:
            print(f"{preset.name}: ready in {home_dir}")
    if problems:
        raise DownloadError(problems)
    return 0


def _verify(names: list[str], home_dir: Path, presets_file) -> int:
    """Re-hash the files of the named presets (default: all with files on disk); 2 if any is corrupt."""
    presets = list_presets(home=home_dir, presets_file=presets_file)
    chosen = ([get_preset(n, home=home_dir, presets_file=presets_file) for n in names] if names else
              [p for p in presets.values() if _disk_state(p, home_dir) in ("yes", "partial", "built-in")])
    if not chosen:
        print(f"no preset has files in {home_dir}; nothing to verify")
        return 0
    manifest = Manifest(home_dir / MANIFEST_NAME)
    rows, corrupt = [["PRESET", "FILE", "STATUS"]], 0
    for preset in chosen:
        for spec, path in zip(preset.files, preset_paths(preset, home_dir)):
            if not path.is_file():
                part = path.with_name(path.name + ".part")
                status = ("partial download: `vqclip models download " + preset.name + "` resumes it"
                          if part.is_file() else "missing")
            elif preset.embedded:
                status = "ok (built in)"
            else:
                recorded = spec.sha256 is not None or manifest.entry(path) is not None
                try:
                    digest = verify_file(path, spec, manifest)
                except CorruptFileError as exc:
                    corrupt += 1
                    status = f"CORRUPT: {exc.reason}"
                else:
                    how = "pinned" if spec.sha256 else ("recorded" if recorded else "recorded now")
                    status = f"ok (sha256 {digest[:12]}..., {how})"
            rows.append([preset.name, spec.filename, status])
    print("\n".join(_table(rows, shutil.get_terminal_size((100, 24)).columns)))
    if corrupt:
        raise VqclipError(f"{corrupt} corrupt file{'s' * (corrupt != 1)}: delete {'them' if corrupt > 1 else 'it'} "
                          "and run `vqclip models download NAME` to fetch a good copy")
    return 0
