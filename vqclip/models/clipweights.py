"""Where CLIP weights come from: a file put in `<home>/clip` by hand, else open_clip's own downloader and the
standard Hugging Face cache (shared with open_clip, diffusers and transformers, listed by `hf cache ls`), or
`<home>/clip` instead when the user chose a vqclip home (VQCLIP_HOME, --home); offline, a DownloadError naming every
missing file at once, without the hub client's minute of retries."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import urllib.parse
from pathlib import Path
from typing import Iterable

from .download import DownloadError, MissingFile
from .presets import chosen_home, home
from .spec import ClipSpec, check_model_name
from ..errors import VqclipError, reason

log = logging.getLogger("vqclip")


@contextlib.contextmanager
def quiet_hub_logs():
    """While open_clip fetches weights: no huggingface_hub retry warnings, and no root logger set up by open_clip's
    `logging.info()` calls (it would print every library's log lines); a failure is reported once, as a VqclipError."""
    hub, root, mute = logging.getLogger("huggingface_hub"), logging.getLogger(), logging.NullHandler()
    level = hub.level
    hub.setLevel(logging.ERROR)
    root.addHandler(mute)  # root has a handler: logging.info() and friends no longer call basicConfig()
    try:
        yield
    finally:
        hub.setLevel(level)
        root.removeHandler(mute)


def clip_weights_url(cfg: dict) -> tuple[str, str]:
    """(download URL, file name) of an open_clip pretrained config, preferring the Hugging Face safetensors copy."""
    hub = cfg.get("hf_hub", "")
    if hub:
        repo, filename = os.path.split(hub)
        if not filename or filename == "open_clip_pytorch_model.bin":
            filename = "open_clip_model.safetensors"
        return f"https://huggingface.co/{repo}/resolve/main/{filename}", filename
    url = cfg.get("url", "")
    return url, os.path.basename(urllib.parse.urlsplit(url).path)


def hf_hub_cache() -> Path:
    """The standard Hugging Face hub cache as huggingface_hub finds it from the environment now: $HF_HUB_CACHE, else
    $HF_HOME/hub, else $XDG_CACHE_HOME/huggingface/hub (~/.cache/huggingface/hub)."""
    def expand(text: str) -> str:
        return os.path.expandvars(os.path.expanduser(text))

    for name in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(name, "").strip():
            return Path(expand(os.environ[name].strip())).absolute()
    hf_home = os.environ.get("HF_HOME", "").strip() or os.path.join(
        os.environ.get("XDG_CACHE_HOME", "").strip() or "~/.cache", "huggingface")
    return (Path(expand(hf_home)) / "hub").absolute()


def own_clip_folder(home_dir: Path | None = None) -> Path:
    """vqclip's own CLIP folder, `<home>/clip`: hand-placed files, and downloads when the home was chosen."""
    return (Path(home_dir).expanduser().absolute() if home_dir is not None else home()) / "clip"


def clip_cache(home_dir: Path | None = None) -> Path:
    """Where open_clip downloads hub weights and finds them again: `<home>/clip` when the user chose a vqclip home
    (`home_dir` given, as by --home, or $VQCLIP_HOME set), else the shared Hugging Face cache."""
    return own_clip_folder(home_dir) if home_dir is not None or chosen_home() else hf_hub_cache()


def clip_manual_path(model: str, tag: str, home_dir: Path | None = None) -> Path:
    """Where a hand-downloaded CLIP weights file goes: `<home>/clip/<model>-<tag><suffix>`."""
    import open_clip  # here: the CLI imports this module for --help, which needs no torch

    _, filename = clip_weights_url(open_clip.get_pretrained_cfg(model, tag))
    return own_clip_folder(home_dir) / f"{model}-{tag}{Path(filename).suffix or '.safetensors'}"


def hand_placed_clip(model: str, tag: str, home_dir: Path | None = None) -> tuple[str, str] | None:
    """(model, weights path) that load a hand-placed CLIP file exactly as the tag would, or None if none is there.

    A file path loses the tag's settings, so a QuickGELU tag (OpenAI weights) maps to open_clip's `-quickgelu`
    architecture of the same model.
    """
    import open_clip  # here: the CLI imports this module for --help, which needs no torch

    cfg = open_clip.get_pretrained_cfg(model, tag)
    path = clip_manual_path(model, tag, home_dir) if cfg else None
    return _as_file(model, cfg, path) if path is not None and path.is_file() else None


def _as_file(model: str, cfg: dict, path: Path) -> tuple[str, str]:
    """(model, path) that load a tag's weights file as the tag would (QuickGELU tags use the `-quickgelu` model)."""
    import open_clip  # here: the CLI imports this module for --help, which needs no torch

    quick = f"{model}-quickgelu"
    if cfg.get("quick_gelu") and not model.endswith("-quickgelu") and quick in open_clip.list_models():
        model = quick
    return model, str(path)


def placed_or_tag(model: str, pretrained: str | None,
                  home_dir: Path | None = None) -> tuple[str, str | None, str | None]:
    """(model, pretrained, like) to load: a local file of the tag (placed by hand, else fetched earlier into the
    CLIP cache) stands in for it, so that loading asks no server again, and `like` then names the tag (so load_clip
    applies its preprocessing); otherwise the values as given and `like` None."""
    import open_clip  # here: the CLI imports this module for --help, which needs no torch

    cfg = open_clip.get_pretrained_cfg(model, pretrained) if pretrained else None
    if not cfg:
        return model, pretrained, None
    local = clip_on_disk(model, pretrained, home_dir)
    return (*_as_file(model, cfg, local[0]), pretrained) if local else (model, pretrained, None)


def clip_on_disk(model: str, tag: str, home_dir: Path | None = None) -> tuple[Path, str] | None:
    """The weights file a tag loads from, if on disk, and whose it is: "placed" (by hand, in `<home>/clip`), "own"
    (vqclip's download cache in `<home>/clip`) or "shared" (the Hugging Face cache); None when not on disk.

    Looks in `<home>/clip` first, so files placed or fetched there by earlier versions keep working, and in the
    Hugging Face cache even when downloads go to `<home>/clip`: a copy there is never fetched again."""
    import open_clip  # here: the CLI imports this module for --help, which needs no torch

    cfg = open_clip.get_pretrained_cfg(model, tag)
    if not cfg:
        return None
    manual = clip_manual_path(model, tag, home_dir)
    if manual.is_file():
        return manual, "placed"
    own = own_clip_folder(home_dir)
    for folder in dict.fromkeys([own, clip_cache(home_dir), hf_hub_cache()]):  # the shared cache read in any case
        found = _in_clip_cache(cfg, folder)
        if found is not None:
            return found, "own" if folder == own else "shared"
    return None


def _in_clip_cache(cfg: dict, cache: Path) -> Path | None:
    """The weights open_clip would load for a pretrained config, if its downloader already put them in `cache`."""
    from huggingface_hub import try_to_load_from_cache

    hub = cfg.get("hf_hub", "")
    if hub:
        repo, filename = os.path.split(hub)
        for name in dict.fromkeys([clip_weights_url(cfg)[1], filename or "open_clip_pytorch_model.bin"]):
            found = try_to_load_from_cache(repo, name, cache_dir=str(cache))
            if isinstance(found, str) and Path(found).is_file():
                return Path(found).absolute()
        return None
    url = cfg.get("url", "")
    local = cache / os.path.basename(urllib.parse.urlsplit(url).path) if url else None
    return local.absolute() if local is not None and local.is_file() else None


def _hub_endpoint() -> str:
    """The Hugging Face host open_clip downloads from (HF_ENDPOINT, else huggingface.co)."""
    from huggingface_hub import constants

    return constants.ENDPOINT


def unreachable_host(url: str, timeout: float = 5.0) -> str | None:
    """Why `url`'s host cannot be reached (its name does not resolve, or it refuses or ignores a connection for
    `timeout` seconds), else None; None behind a proxy, which reaches hosts itself, and under HF_HUB_OFFLINE, where
    huggingface_hub fails fast on its own."""
    if any(os.environ.get(k) for k in ("https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY", "HF_HUB_OFFLINE")):
        return None
    parts = urllib.parse.urlsplit(url)
    if not parts.hostname:
        return None
    try:
        socket.create_connection((parts.hostname, parts.port or (80 if parts.scheme == "http" else 443)),
                                 timeout=timeout).close()
    except OSError as exc:
        return f"{parts.hostname}: {exc.strerror or reason(exc)}"
    return None


def fetch_clip(model: str, tag: str, home_dir: Path | None = None) -> Path:
    """The local file of open_clip's weights for (model, tag), fetched by open_clip's own downloader if needed.

    Looks first for a hand-placed file (`clip_manual_path`), then in the CLIP caches (`clip_on_disk`), then lets
    open_clip download into `clip_cache(home_dir)` (the Hugging Face cache unless a vqclip home was chosen; pass
    it as `cache_dir` when loading by tag). A tag that is a file path is returned as is. Failures raise
    DownloadError in the same style as VQGAN files.
    """
    import open_clip  # here: the CLI imports this module for --help, which needs no torch
    from open_clip import pretrained as oc_pretrained

    cfg = oc_pretrained.get_pretrained_cfg(model, tag)
    if not cfg:
        if Path(tag).expanduser().is_file():
            return Path(tag).expanduser().absolute()
        known = ", ".join(open_clip.list_pretrained_tags_by_model(model)) or "none"
        raise VqclipError(f"CLIP {model} has no pretrained weights called '{tag}' (known: {known}); "
                          "see open_clip.list_pretrained()")
    manual = clip_manual_path(model, tag, home_dir)
    on_disk = clip_on_disk(model, tag, home_dir)
    if on_disk is not None:
        return on_disk[0]
    # hub files go to the shared cache in its own layout; a plain URL (no hub copy) to vqclip's folder
    cache = clip_cache(home_dir) if cfg.get("hf_hub") else own_clip_folder(home_dir)
    url, _ = clip_weights_url(cfg)

    note = "" if cache == own_clip_folder(home_dir) else f"read from there first; downloads go to {cache}"

    def failed(why: str) -> DownloadError:
        return DownloadError([MissingFile(f"CLIP {model} ({tag}) weights", (url,), manual, (f"{url}: {why}",), note)])

    down = unreachable_host(_hub_endpoint() if cfg.get("hf_hub") else url)
    if down:  # offline: say so now, not after huggingface_hub's ten retries (about 50 s)
        raise failed(down)
    cache.mkdir(parents=True, exist_ok=True)
    log.info("fetching CLIP %s (%s) weights with open_clip into %s", model, tag, cache)
    try:
        with quiet_hub_logs():
            target = oc_pretrained.download_pretrained(cfg, cache_dir=str(cache))
    except Exception as exc:  # open_clip and huggingface_hub raise anything from OSError to their own errors
        raise failed(reason(exc)) from None
    if not target or not Path(target).is_file():
        raise failed("open_clip returned no file")
    return Path(target).absolute()


def clips_missing(specs: Iterable[tuple[str, str | None]], home_dir: Path | None = None) -> list[MissingFile]:
    """Fetch the weights of every (model, pretrained tag) among `specs` (open_clip names, checked first: an unknown
    one is a one-line error); what could not be fetched, once each.

    Specs whose pretrained value is not an open_clip tag (a file, None) need nothing fetched and are passed over.
    """
    import open_clip  # here: the CLI imports this module for --help, which needs no torch

    missing: dict[Path, MissingFile] = {}
    specs = list(dict.fromkeys(specs))
    for model, _ in specs:
        if ClipSpec.parse(model).form == "name":
            check_model_name(model)
    for model, tag in specs:
        if tag and open_clip.get_pretrained_cfg(model, tag):
            try:
                fetch_clip(model, tag, home_dir)
            except DownloadError as exc:
                missing.update((m.dest, m) for m in exc.missing)
    return list(missing.values())
