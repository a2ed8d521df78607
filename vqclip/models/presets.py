"""Named model presets as data: which VQGAN files and which CLIP a name means, where its files live, and the job
defaults it brings.

Built-in presets come from `vqclip/models/presets.yaml`; users add or override presets in YAML files of the same
format (`<home>/presets.yaml`, the paths in `$VQCLIP_PRESETS`, or an explicit file), validated strictly so a typo is
an error naming the file and the key rather than a silent default. Every preset is the same kind of thing: its files
live in its folder (the model home, or inside the package for an `embedded` one such as `mini`).
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import functools
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import platformdirs
import yaml

from ..errors import VqclipError
from ..files.jobyaml import load_value
from .spec import openai_name

DEFAULT_PRESET = "imagenet-16384"
DEFAULT_CLIP = ("ViT-B-32", "openai")
BUILTIN_FILE = Path(__file__).resolve().parent / "presets.yaml"
EMBEDDED_DIR = Path(__file__).resolve().parent.parent / "mini" / "weights"  # where embedded presets' files ship
MANIFEST_NAME = "manifest.json"
PRESET_FILE = "preset.yaml"  # a preset folder's own presets file (one preset, its files beside it)

_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_UNITS = {"b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


@dataclass(frozen=True)
class FileSpec:
    """One file of a preset: its name under the home dir, where to get it (first URL, then mirrors), what it must be."""

    filename: str
    urls: tuple[str, ...] = ()
    size: int | None = None
    sha256: str | None = None
    approx_size: int | None = None  # for display only; never checked


@dataclass(frozen=True)
class Vocabulary:
    """The words a preset's CLIP knows (its caption grammar), for a notice when a prompt goes outside them."""

    words: frozenset[str]
    grammar: str  # one line
    example: str

    def unknown(self, texts: Iterable[str]) -> list[str]:
        """The words of `texts` (case ignored) that are not in the vocabulary, each once, in order of appearance."""
        found = (w for text in texts for w in re.findall(r"[^\W_]+", text.lower()))
        return list(dict.fromkeys(w for w in found if w not in self.words))


@dataclass(frozen=True)
class JudgeSpec:
    """The held-out judge a preset names: a CLIP that did not guide the run (an open_clip name + tag, or files in the
    preset's folder) and optionally a LAION aesthetic head (one linear layer on its image embedding), a file fetched as
    the preset's others are."""

    model: str
    pretrained: str | None
    aesthetic: FileSpec | None = None


@dataclass(frozen=True)
class Preset:
    """A named VQGAN (config + checkpoint) with its default CLIP, provenance and job defaults."""

    name: str
    description: str
    vqgan_config: FileSpec
    vqgan_checkpoint: FileSpec
    clip_model: str
    clip_pretrained: str | None
    clip_templates: tuple[str, ...] = ()  # prompt templates its CLIP's text side knows (classify); () = the usual
    licence: str = ""
    source: str = ""
    defaults: dict = field(default_factory=dict)
    aliases: tuple[str, ...] = ()
    embedded: bool = False  # files ship inside the package (MINI_DIR), nothing to download
    origin: str = "built-in"  # "built-in" or the user file that defined it
    vocabulary: Vocabulary | None = None  # the only words its CLIP knows, when it knows few (the mini world's)
    base: Path | None = None  # a preset given as a folder (`--model DIR`): its files live there
    judge: JudgeSpec | None = None  # what scores its runs' frames (output.judge), never one of their guides

    @property
    def files(self) -> tuple[FileSpec, FileSpec]:
        """(config, checkpoint)."""
        return self.vqgan_config, self.vqgan_checkpoint

    def folder(self, home_dir: Path | None = None) -> Path:
        """Where this preset's files live: inside the package for an embedded preset, else the model home."""
        return self.base if self.base is not None else EMBEDDED_DIR if self.embedded else _home_or_default(home_dir)

    def local(self, name: str | None, home_dir: Path | None = None) -> str | None:
        """A file this preset names by a bare file name (CLIP or guide files), as its path in the preset's folder;
        anything else (an open_clip name or tag, a path, None) unchanged."""
        if not name or Path(name).name != name or not Path(name).suffix:  # not a file name: a model name or tag
            return name
        path = self.folder(home_dir) / name
        return str(path) if path.is_file() or self.embedded else name

    @property
    def approx_size(self) -> int | None:
        """Best known total download size in bytes (exact sizes first), None when nothing is known."""
        sizes = [f.size if f.size is not None else f.approx_size for f in self.files]
        known = [s for s in sizes if s is not None]
        return sum(known) if known and sizes[1] is not None else None


LEGACY_HOME = Path("checkpoints")  # where the VQGAN+CLIP scripts (and earlier vqclip) kept their model files


def chosen_home() -> bool:
    """True when the user chose the model home ($VQCLIP_HOME); then CLIP weights are kept there too."""
    return bool(os.environ.get("VQCLIP_HOME", "").strip())


@functools.cache
def _builtin_filenames() -> frozenset[str]:
    """The file names of the built-in presets' VQGAN files (the names the old scripts' downloads have)."""
    return frozenset(f.filename for p in load_presets_file(BUILTIN_FILE, builtin=True).values() for f in p.files)


def holds_models(folder: Path) -> bool:
    """True when `folder` holds vqclip's model files: a built-in preset's VQGAN file (as the old scripts named
    them), a manifest.json or a presets.yaml; a folder of other projects' checkpoints does not count."""
    names = _builtin_filenames() | {MANIFEST_NAME, "presets.yaml"}
    try:
        return folder.is_dir() and any(p.name in names and p.is_file() for p in folder.iterdir())
    except OSError:
        return False


def home_choice() -> tuple[Path, str]:
    """(model home, why it is used): $VQCLIP_HOME; else ./checkpoints if it holds model files (the old scripts'
    folder, so their downloads are used); else the per-user cache folder, the same from any folder."""
    env = os.environ.get("VQCLIP_HOME", "").strip()
    if env:
        return model_folder(Path(env).expanduser().absolute(), "VQCLIP_HOME"), "set by VQCLIP_HOME"
    local = LEGACY_HOME.absolute()
    if holds_models(local):
        return local, "./checkpoints here holds model files"
    cache = Path(platformdirs.user_cache_dir("vqclip", appauthor=False)).absolute()
    why = "the per-user cache folder: no VQCLIP_HOME, no ./checkpoints with model files here"
    return model_folder(cache, "VQCLIP_HOME"), why


def home() -> Path:
    """Where downloaded models live: $VQCLIP_HOME, else ./checkpoints if it holds model files, else the per-user
    cache folder (platformdirs' user_cache_dir, ~/.cache/vqclip on Linux); absolute."""
    return home_choice()[0]


def _home_or_default(home_dir: Path | None) -> Path:
    """`home_dir` made absolute, or the default home."""
    return model_folder(Path(home_dir).expanduser().absolute(), "--home") if home_dir is not None else home()


def model_folder(path: Path, where: str) -> Path:
    """`path`, unless it is a file: model files cannot live under one."""
    if path.exists() and not path.is_dir():
        raise VqclipError(f"{path}: is a file, not a folder; point {where} at a folder for the model files")
    return path


def parse_size(value: Any, where: str) -> int | None:
    """Bytes from an int or a string like '980 MB' / '1.5 GiB'; None stays None."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise VqclipError(f"{where}: expected a size in bytes or like '980 MB', got {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise VqclipError(f"{where}: a size cannot be negative ({value})")
        return value
    match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([a-zA-Z]*)\s*", str(value)) if isinstance(value, str) else None
    unit = match.group(2).lower() if match else ""
    if not match or (unit and unit not in _UNITS):
        raise VqclipError(f"{where}: expected a size in bytes or like '980 MB', got {value!r}")
    return int(float(match.group(1)) * _UNITS[unit or "b"])


def _check_keys(data: Any, where: str, required: set[str], optional: set[str]) -> dict:
    """`data` as a mapping with exactly the allowed keys, else a VqclipError naming the place and the key."""
    if not isinstance(data, dict):
        raise VqclipError(f"{where}: expected a mapping, got {type(data).__name__}")
    for key in data:
        if not isinstance(key, str) or key not in required | optional:
            allowed = ", ".join(sorted(required | optional))
            raise VqclipError(f"{where}: unknown key {key!r} (allowed: {allowed})")
    missing = sorted(required - data.keys())
    if missing:
        raise VqclipError(f"{where}: missing required key {missing[0]!r}")
    return data


def _string(value: Any, where: str, *, allow_none: bool = False) -> str | None:
    """A non-empty string (or None when allowed)."""
    if value is None and allow_none:
        return None
    if not isinstance(value, str) or not value.strip():
        raise VqclipError(f"{where}: expected a non-empty string, got {value!r}")
    return value.strip()


def _file_spec(data: Any, where: str, *, embedded: bool) -> FileSpec:
    """One validated FileSpec from its YAML mapping."""
    data = _check_keys(data, where, {"filename"}, {"urls", "size", "sha256", "approx_size"})
    filename = _string(data["filename"], f"{where}.filename")
    if filename in (".", "..") or "/" in filename or "\\" in filename:
        raise VqclipError(f"{where}.filename: must be a bare file name (no folders), got {filename!r}")
    urls = data.get("urls", [])
    urls = [urls] if isinstance(urls, str) else urls
    if not isinstance(urls, list):
        raise VqclipError(f"{where}.urls: expected a list of URLs, got {type(urls).__name__}")
    for i, url in enumerate(urls):
        if not isinstance(url, str) or not re.match(r"^https?://[^\s/]+", url):
            raise VqclipError(f"{where}.urls[{i}]: expected an http(s) URL, got {url!r}")
    if embedded and urls:
        raise VqclipError(f"{where}.urls: an embedded preset ships its files, it cannot list URLs")
    size = data.get("size")
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 0):
        raise VqclipError(f"{where}.size: expected an exact size in bytes (integer) or null, got {size!r}")
    sha = data.get("sha256")
    if sha is not None:
        if not isinstance(sha, str) or not _SHA256.match(sha.strip().lower()):
            raise VqclipError(f"{where}.sha256: expected 64 hexadecimal characters or null, got {sha!r}")
        sha = sha.strip().lower()
    approx = parse_size(data.get("approx_size"), f"{where}.approx_size")
    return FileSpec(filename, tuple(urls), size, sha, approx)


def _preset(name: Any, data: Any, source: str, *, builtin: bool) -> Preset:
    """One validated Preset from its YAML mapping; `source` names the file for error messages."""
    where = f"{source}: presets.{name}"
    if not isinstance(name, str) or not _NAME.match(name):
        raise VqclipError(f"{source}: preset name {name!r} must be lowercase letters, digits, '.', '_' or '-'")
    data = _check_keys(data, where, {"description", "vqgan"},
                       {"clip", "defaults", "source", "licence", "aliases", "embedded", "vocabulary", "judge"})
    embedded = data.get("embedded", False)
    if not isinstance(embedded, bool):
        raise VqclipError(f"{where}.embedded: expected true or false, got {embedded!r}")
    if embedded and not builtin:
        raise VqclipError(f"{where}.embedded: only built-in presets can be embedded; list urls instead")
    vqgan = _check_keys(data["vqgan"], f"{where}.vqgan", {"config", "checkpoint"}, set())
    config = _file_spec(vqgan["config"], f"{where}.vqgan.config", embedded=embedded)
    checkpoint = _file_spec(vqgan["checkpoint"], f"{where}.vqgan.checkpoint", embedded=embedded)
    clip_model, clip_pretrained = DEFAULT_CLIP
    templates: list[str] = []
    if "clip" in data:
        clip = _check_keys(data["clip"], f"{where}.clip", {"model"}, {"pretrained", "templates"})
        clip_model = _string(clip["model"], f"{where}.clip.model")
        clip_model = openai_name(clip_model) or clip_model  # ViT-B/32, as the old scripts' presets name it
        clip_pretrained = _string(clip.get("pretrained"), f"{where}.clip.pretrained", allow_none=True)
        templates = clip.get("templates", [])
        if not isinstance(templates, list) or not all(isinstance(t, str) and t.count("{}") == 1 for t in templates):
            raise VqclipError(f"{where}.clip.templates: expected a list of templates with one '{{}}' each")
    defaults = data.get("defaults") or {}
    if not isinstance(defaults, dict) or not all(isinstance(k, str) for k in defaults):
        raise VqclipError(f"{where}.defaults: expected a mapping of job settings (like steps: 300)")
    aliases = data.get("aliases", [])
    if not isinstance(aliases, list) or not all(isinstance(a, str) and _NAME.match(a) for a in aliases):
        raise VqclipError(f"{where}.aliases: expected a list of lowercase names")
    return Preset(
        name=name,
        description=_string(data["description"], f"{where}.description"),
        vqgan_config=config,
        vqgan_checkpoint=checkpoint,
        clip_model=clip_model,
        clip_pretrained=clip_pretrained,
        clip_templates=tuple(templates),
        licence=_string(data.get("licence", "unknown"), f"{where}.licence"),
        source=_string(data.get("source", "unknown"), f"{where}.source"),
        defaults=defaults,
        aliases=tuple(aliases),
        embedded=embedded,
        origin="built-in" if builtin else source,
        vocabulary=_vocabulary(data["vocabulary"], f"{where}.vocabulary") if "vocabulary" in data else None,
        judge=_judge(data["judge"], f"{where}.judge", embedded) if "judge" in data else None,
    )


def _judge(data: Any, where: str, embedded: bool) -> JudgeSpec:
    """A validated JudgeSpec: a CLIP (model, pretrained) and an optional aesthetic head file entry."""
    data = _check_keys(data, where, {"model"}, {"pretrained", "aesthetic"})
    model = _string(data["model"], f"{where}.model")
    aesthetic = data.get("aesthetic")
    pretrained = _string(data.get("pretrained"), f"{where}.pretrained", allow_none=True)
    return JudgeSpec(openai_name(model) or model, pretrained,
                     _file_spec(aesthetic, f"{where}.aesthetic", embedded=embedded) if aesthetic is not None else None)


def _vocabulary(data: Any, where: str) -> Vocabulary:
    """A validated Vocabulary: a list of lowercase words, a one-line grammar and an example made of those words."""
    data = _check_keys(data, where, {"words", "grammar", "example"}, set())
    words = data["words"]
    if not isinstance(words, list) or not words or not all(isinstance(w, str) and re.fullmatch(r"[^\W_A-Z]+", w)
                                                           for w in words):
        raise VqclipError(f"{where}.words: expected a list of lowercase words, got {words!r}")
    grammar, example = _string(data["grammar"], f"{where}.grammar"), _string(data["example"], f"{where}.example")
    if "\n" in grammar:
        raise VqclipError(f"{where}.grammar: expected one line")
    vocabulary = Vocabulary(frozenset(words), grammar, example)
    outside = vocabulary.unknown([example])
    if outside:
        raise VqclipError(f"{where}.example: uses {', '.join(outside)}, not in its words")
    return vocabulary


def load_presets_file(path: str | os.PathLike, *, builtin: bool = False) -> dict[str, Preset]:
    """Every preset of one YAML file, validated; any problem is a VqclipError naming the file and the key. A command
    reads the presets several times: a text read before is not parsed again (a fresh copy of its presets each time)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise VqclipError(f"{path}: cannot read presets file ({exc.strerror or exc})") from None
    return copy.deepcopy(_parse_presets(str(path), text, builtin))


@functools.lru_cache(maxsize=16)
def _parse_presets(path: str, text: str, builtin: bool) -> dict[str, Preset]:
    """The presets of one file's text (cached by the text itself, so an edited file is parsed again)."""
    path = Path(path)
    try:
        data = load_value(text, str(path))  # bounded: no alias bomb
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        raise VqclipError(f"{path}: not valid YAML{at} ({getattr(exc, 'problem', None) or exc})") from None
    if data is None:
        return {}
    data = _check_keys(data, str(path), {"presets"}, {"version"})
    if data.get("version", 1) != 1:
        raise VqclipError(f"{path}: version: this vqclip reads presets files of version 1, got {data['version']!r}")
    presets = data["presets"] or {}
    if not isinstance(presets, dict):
        raise VqclipError(f"{path}: presets: expected a mapping of preset names to presets")
    return {name: _preset(name, body, str(path), builtin=builtin) for name, body in presets.items()}


def user_preset_files(*, home_dir: Path | None = None,
                      presets_file: str | os.PathLike | None = None) -> list[Path]:
    """User preset files in override order: <home>/presets.yaml if present, $VQCLIP_PRESETS, then `presets_file`."""
    files = []
    in_home = _home_or_default(home_dir) / "presets.yaml"
    if in_home.is_file():
        files.append(in_home)
    for entry in os.environ.get("VQCLIP_PRESETS", "").split(os.pathsep):
        if entry.strip():
            path = Path(entry.strip()).expanduser()
            if not path.is_file():
                raise VqclipError(f"VQCLIP_PRESETS names {path}, which is not a file; fix or unset the variable")
            files.append(path)
    if presets_file is not None:
        path = Path(presets_file).expanduser()
        if not path.is_file():
            raise VqclipError(f"{path}: no such presets file")
        files.append(path)
    return files


def list_presets(*, home: Path | None = None, presets_file: str | os.PathLike | None = None) -> dict[str, Preset]:
    """All presets by name: built-ins first, then user files (a user preset of the same name replaces a built-in)."""
    presets = load_presets_file(BUILTIN_FILE, builtin=True)
    for path in user_preset_files(home_dir=home, presets_file=presets_file):
        presets.update(load_presets_file(path))
    return presets


def get_preset(name: str, *, home: Path | None = None, presets_file: str | os.PathLike | None = None) -> Preset:
    """The preset called `name` (or one of its aliases), or the one preset of a preset folder (DIR/preset.yaml, its
    files beside it: what `vqclip train vqgan` exports); an unknown name lists the known ones."""
    folder = Path(name).expanduser() if isinstance(name, str) and name.strip() else None
    if folder is not None and (folder / PRESET_FILE).is_file():
        found = load_presets_file(folder / PRESET_FILE)
        if len(found) != 1:
            raise VqclipError(f"{folder / PRESET_FILE}: a preset folder holds exactly one preset, found {len(found)}")
        return dataclasses.replace(next(iter(found.values())), base=folder.absolute())
    presets = list_presets(home=home, presets_file=presets_file)
    key = name.strip().lower() if isinstance(name, str) else name
    if key in presets:
        return presets[key]
    for preset in presets.values():
        if key in preset.aliases:
            return preset
    close = difflib.get_close_matches(str(key), list(presets), n=1)
    hint = f"did you mean '{close[0]}'? " if close else ""
    raise VqclipError(f"unknown model preset '{name}': {hint}known presets are {', '.join(presets)} "
                      "(add your own in <home>/presets.yaml; see `vqclip models`)")
