"""`vqclip models`: list the model presets with what is on disk and where, download them ahead of time, re-check
the files on disk, remove a preset's files."""

from __future__ import annotations

import argparse
import shutil
import textwrap
from pathlib import Path

from ..errors import VqclipError
from ..models.auxmodels import FOLDER as AUX_FOLDER
from ..models.auxmodels import AuxPreset, check_prefix, get_aux, is_aux, load_aux_file
from ..models.clipweights import clip_cache, clip_on_disk, fetch_clip, hand_placed_clip, own_clip_folder
from ..models.download import DownloadError, fetch, human_size
from ..models.integrity import CorruptFileError, Manifest, verify_file
from ..models.presets import (DEFAULT_PRESET, MANIFEST_NAME, Preset, chosen_home, get_preset, home_choice,
                              list_presets, model_folder)
from ..models.resolve import preset_paths


def register(subparsers) -> None:
    """Add `vqclip models [list|download|verify|remove]`."""
    common = argparse.ArgumentParser(add_help=False)
    # SUPPRESS: the option may be given before or after the action without one level resetting the other
    common.add_argument("--home", metavar="DIR", default=argparse.SUPPRESS,
                        help="where models live, CLIP weights included (default: $VQCLIP_HOME, else ./checkpoints if "
                             "it holds model files, else the per-user cache folder; CLIP weights then go to the "
                             "Hugging Face cache)")
    common.add_argument("--presets", metavar="FILE", default=argparse.SUPPRESS,
                        help="an extra YAML file of user presets (also read: <home>/presets.yaml, $VQCLIP_PRESETS)")
    parser = subparsers.add_parser(
        "models", parents=[common], help="list, download and verify model presets",
        description="Model presets: named VQGAN files plus a default CLIP, and auxiliary models (depth, flow). "
                    "Without an action, lists them.")
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
    rm = actions.add_parser("remove", parents=[common], help="delete a preset's downloaded files, printing what and "
                                                             "how much (never from the shared Hugging Face cache)")
    rm.add_argument("name", metavar="NAME", help="preset name (see `vqclip models`)")
    parser.set_defaults(func=run)


def _home(args) -> tuple[Path, str, Path | None]:
    """(home folder, why it is used, the folder --home gave or None): --home, else the default `home_choice()`."""
    given = getattr(args, "home", None)
    if given:
        folder = model_folder(Path(given).expanduser().absolute(), "--home")
        return folder, "given by --home", folder
    return (*home_choice(), None)


def run(args) -> int:
    """Dispatch `vqclip models` to its action; the exit code."""
    timeout = getattr(args, "timeout", 30.0)
    if not 0 < timeout < float("inf"):
        raise VqclipError(f"--timeout: must be a number of seconds > 0, got {timeout}")
    (home_dir, why, given), presets_file = _home(args), getattr(args, "presets", None)
    action = getattr(args, "models_action", None) or "list"
    if action == "download":
        return _download(args, home_dir, given, presets_file)
    if action == "verify":
        return _verify(args.names, home_dir, presets_file)
    if action == "remove":
        return _remove(args.name, home_dir, given, presets_file)
    return _list(home_dir, why, given, presets_file)


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
    """Rows as left-aligned columns; the last column wraps onto lines of its own to fit `width` (at least 24
    characters of it a line), never cut."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    lines = []
    for row in rows:
        head = "  ".join(cell.ljust(w) for cell, w in zip(row, widths))
        parts = textwrap.wrap(row[-1], max(width - len(head) - 3, 24), break_on_hyphens=False) or [""]
        lines.append(f"{head}  {parts[0]}".rstrip())
        lines.extend(" " * (len(head) + 2) + part for part in parts[1:])
    return lines


def _file_bytes(path: Path) -> int:
    """Bytes a file takes (0 for a link, whose target is not the home's, or for no file)."""
    return path.stat().st_size if path.is_file() and not path.is_symlink() else 0


def _vqgan_on_disk(preset: Preset, home_dir: Path) -> list[Path]:
    """The preset's VQGAN files (and partial downloads) that are on disk."""
    paths = preset_paths(preset, home_dir)
    partial = [p.with_name(p.name + suffix) for p in paths for suffix in (".part", ".part.json")]
    return [p for p in (*paths, *partial) if p.is_file()]


def _preset_clip(preset: Preset, given: Path | None) -> tuple[Path, str] | None:
    """(weights file, whose) of the preset's CLIP tag when on disk (see `clip_on_disk`), else None."""
    if preset.embedded or not preset.clip_pretrained:
        return None
    return clip_on_disk(preset.clip_model, preset.clip_pretrained, given)


WHOSE = {"placed": "placed by hand", "own": "vqclip's copy", "shared": "shared Hugging Face cache"}


def _list(home_dir: Path, why: str, given: Path | None, presets_file) -> int:
    """Print where models live and why, then the presets as an aligned table, then each one's files on disk."""
    presets = list_presets(home=home_dir, presets_file=presets_file)
    print(f"Home: {home_dir} ({why})")
    if given is not None or chosen_home():
        print(f"CLIP weights: downloaded into {own_clip_folder(given)} (the chosen home)")
    else:
        print(f"CLIP weights: downloaded into the Hugging Face cache {clip_cache()} (shared with open_clip, "
              "diffusers, transformers)")
    rows, where = [["NAME", "SIZE", "ON DISK", "CLIP", "WHAT IT IS"]], []
    for p in presets.values():
        clip = p.clip_model if p.embedded else f"{p.clip_model} ({p.clip_pretrained or 'random'})"
        name = p.name + (" *" if p.name == DEFAULT_PRESET else "")
        files = sorted(p.folder().glob("*")) if p.embedded else _vqgan_on_disk(p, home_dir)
        state, used = _disk_state(p, home_dir), sum(_file_bytes(f) for f in files)
        rows.append([name, _size(p), state + (f", {human_size(used)}" if files else ""),
                     "embedded" if p.embedded else clip, p.description])
        if p.embedded:
            where.append((p.name, f"{p.folder()} (built in)"))
        elif files:
            where.append((p.name, ", ".join(str(f) for f in files)))
        weights = _preset_clip(p, given)
        if weights is not None and files:
            where.append(("", f"CLIP {clip}: {weights[0]} ({human_size(weights[0].stat().st_size)}, "
                              f"{WHOSE[weights[1]]})"))
    width = shutil.get_terminal_size((100, 24)).columns
    print()
    print("\n".join(_table(rows, width)))
    aux_rows = [["AUXILIARY", "KIND", "SIZE", "ON DISK", "WHAT IT IS"]]
    for a in load_aux_file().values():
        files = _aux_on_disk(a, home_dir)
        state = "yes" if a.path(home_dir).is_file() else "partial" if files else "no"
        size = ("" if a.file.size is not None else "~") + human_size(a.file.size or a.file.approx_size)
        aux_rows.append([a.name, a.kind, size,
                         state + (f", {human_size(sum(_file_bytes(f) for f in files))}" if files else ""),
                         f"{a.description} ({a.licence.split(' ')[0]})" if a.licence else a.description])
        if files:
            where.append((a.name, ", ".join(str(f) for f in files)))
    print()
    print("\n".join(_table(aux_rows, width)))
    if where:
        size = max(len(n) for n, _ in where)
        print("\nOn disk:")
        print("\n".join(f"  {n.ljust(size)}  {text}" for n, text in where))
    print("\n* default.  Set VQCLIP_HOME or --home to move the home.")
    users = sorted({p.origin for p in presets.values() if p.origin != "built-in"})
    if users:
        print("User presets from: " + ", ".join(users))
    print("Fetch ahead of time: vqclip models download NAME   Re-check files: vqclip models verify   "
          "Free space: vqclip models remove NAME")
    return 0


def _download(args, home_dir: Path, given: Path | None, presets_file) -> int:
    """Fetch each named preset's VQGAN files (and CLIP weights unless --skip-clip); one error lists all failures."""
    presets = [get_preset(name, home=home_dir, presets_file=presets_file) for name in args.names if not is_aux(name)]
    manifest = Manifest(home_dir / MANIFEST_NAME)
    problems = []
    for aux in [get_aux(name) for name in args.names if is_aux(name)]:
        try:
            path = fetch(aux.file, home_dir / AUX_FOLDER, progress=not args.no_progress, timeout=args.timeout,
                         manifest=manifest, force=args.force)
        except DownloadError as exc:
            problems.extend(exc.missing)
            continue
        check_prefix(aux, path, manifest)
        print(f"{aux.name}: ready in {home_dir}")
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
            if hand_placed_clip(preset.clip_model, preset.clip_pretrained, given) is None:
                try:
                    fetch_clip(preset.clip_model, preset.clip_pretrained, given)
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
    chosen = ([get_preset(n, home=home_dir, presets_file=presets_file) for n in names if not is_aux(n)] if names else
              [p for p in presets.values() if _disk_state(p, home_dir) in ("yes", "partial", "built-in")])
    auxes = ([get_aux(n) for n in names if is_aux(n)] if names else
             [a for a in load_aux_file().values() if _aux_on_disk(a, home_dir)])
    chosen += [_AuxAsPreset(a) for a in auxes]
    if not chosen:
        print(f"no preset has files in {home_dir}; nothing to verify")
        return 0
    manifest = Manifest(home_dir / MANIFEST_NAME)
    rows, corrupt = [["PRESET", "FILE", "STATUS"]], 0
    for preset in chosen:
        aux = getattr(preset, "aux", None)
        for spec, path in zip(preset.files, [aux.path(home_dir)] if aux else preset_paths(preset, home_dir)):
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
            if aux and aux.sha256_prefix and status.startswith("ok") and not digest.startswith(aux.sha256_prefix):
                corrupt += 1
                status = f"CORRUPT: sha256 does not start with {aux.sha256_prefix}, which its name carries"
            rows.append([preset.name, spec.filename, status])
    print("\n".join(_table(rows, shutil.get_terminal_size((100, 24)).columns)))
    if corrupt:
        raise VqclipError(f"{corrupt} corrupt file{'s' * (corrupt != 1)}: delete {'them' if corrupt > 1 else 'it'} "
                          "and run `vqclip models download NAME` to fetch a good copy")
    return 0


def _remove(name: str, home_dir: Path, given: Path | None, presets_file) -> int:
    """Delete the preset's VQGAN files (and partial downloads) from the home, and its CLIP weights when they are in
    vqclip's own folder and no other preset on disk uses them; print each removal and the bytes freed."""
    if is_aux(name):
        return _remove_aux(get_aux(name), home_dir)
    preset = get_preset(name, home=home_dir, presets_file=presets_file)
    if preset.embedded:
        raise VqclipError(f"'{preset.name}' is built into vqclip (its files ship with the package); it cannot be "
                          "removed")
    removed: list[tuple[Path, int, str]] = []  # (path, bytes freed, what it was)
    manifest = Manifest(home_dir / MANIFEST_NAME)
    for path in _vqgan_on_disk(preset, home_dir):
        removed.append((path, _file_bytes(path), "a link; its target is kept" if path.is_symlink() else ""))
        path.unlink()
        if manifest.path.is_file() and manifest.entry(path) is not None:
            manifest.forget(path)
    weights = _preset_clip(preset, given)
    if weights is not None:
        path, whose = weights
        clip = f"CLIP {preset.clip_model} ({preset.clip_pretrained})"
        others = [p.name for p in list_presets(home=home_dir, presets_file=presets_file).values()
                  if p.name != preset.name and not p.embedded and _disk_state(p, home_dir) != "no"
                  and (p.clip_model, p.clip_pretrained) == (preset.clip_model, preset.clip_pretrained)]
        if whose == "shared":
            print(f"kept {clip}: {path} is in the shared Hugging Face cache, which other tools use too; remove it "
                  "with `hf cache rm` (`huggingface-cli delete-cache` with older huggingface_hub)")
        elif others:
            print(f"kept {clip}: {path} is also used by {', '.join(others)}")
        elif path.is_relative_to(own_clip_folder(given)):  # never a file outside the home
            removed.append(_remove_clip(path, own_clip_folder(given), clip))
    for path, size, what in removed:
        print(f"removed {path} ({what or human_size(size)})")
    if not removed:
        print(f"{preset.name}: nothing to remove in {home_dir}")
        return 0
    freed = sum(size for _, size, _ in removed)
    print(f"{preset.name}: removed {len(removed)} file{'s' * (len(removed) != 1)}, {human_size(freed)} freed")
    return 0


def _remove_clip(path: Path, own: Path, clip: str) -> tuple[Path, int, str]:
    """Delete CLIP weights in vqclip's folder `own`: a hand-placed file, or the whole repository folder open_clip's
    downloader made there (its blobs, snapshots and refs); (path, bytes freed, what it was)."""
    repo = next((p for p in path.parents if p.parent == own and p.name.startswith("models--")), None)
    target = repo or path
    size = sum(_file_bytes(f) for f in repo.rglob("*")) if repo else _file_bytes(path)
    if repo:
        shutil.rmtree(repo)
    else:
        path.unlink()
    return target, size, f"{clip}, {human_size(size)}"


def _aux_on_disk(aux: AuxPreset, home_dir: Path) -> list[Path]:
    """The auxiliary preset's weights file (and partial download) that are on disk."""
    path = aux.path(home_dir)
    return [p for p in (path, path.with_name(path.name + ".part"), path.with_name(path.name + ".part.json"))
            if p.is_file()]


class _AuxAsPreset:
    """An auxiliary preset in the shape `_verify` reads: one downloaded file, never embedded."""

    embedded = False

    def __init__(self, aux: AuxPreset):
        self.aux, self.name, self.files = aux, aux.name, (aux.file,)


def _remove_aux(aux: AuxPreset, home_dir: Path) -> int:
    """Delete an auxiliary preset's weights (and partial download) from the home and forget its sha256 record."""
    manifest = Manifest(home_dir / MANIFEST_NAME)
    files = _aux_on_disk(aux, home_dir)
    for path in files:
        size = _file_bytes(path)
        path.unlink()
        if manifest.path.is_file() and manifest.entry(path) is not None:
            manifest.forget(path)
        print(f"removed {path} ({human_size(size)})")
    if not files:
        print(f"{aux.name}: nothing to remove in {home_dir}")
    return 0
