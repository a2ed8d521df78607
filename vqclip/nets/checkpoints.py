"""Safe checkpoint loading: tensors come out, code never runs.

Published VQGAN `.ckpt` files are pytorch-lightning 1.x pickles that mention Lightning classes (a dict keyed by
`ModelCheckpoint`), so `torch.load(weights_only=True)` refuses them and `weights_only=False` would run whatever
the pickle says. We keep torch's weights-only unpickler and give every unknown name an inert stand-in: it may be
*referenced* (as a dict key) but any attempt to *call* or instantiate it refuses the whole file.
"""

from __future__ import annotations

import logging
import os
import pickle
import warnings
import zipfile
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..errors import UnsafeCheckpointError, VqclipError, missing, reason
from ..files.atomic import atomic_path

log = logging.getLogger("vqclip")

TORCH_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")
CACHE_SOURCE_KEY = "vqclip_source"
# Data-only classes that Lightning pickles beside the weights (hyper_parameters: omegaconf configs, paths,
# argparse namespaces): only tensors are kept, so these become empty placeholders instead of refusing the file.
DISCARDED = ("omegaconf.", "pathlib.", "argparse.Namespace", "typing.")


def _inert_global(name: str, path: Path) -> type:
    """A stand-in class for the global `name`: hashable and comparable, but refusing to be called or built."""

    def refuse(*_args, **_kwargs):
        raise UnsafeCheckpointError(
            f"{path}: refused: unpickling it would call {name}, which is not tensor or collection rebuilding "
            "(the file could run code); convert it to .safetensors with a trusted tool or use another copy"
        )

    meta = type("InertMeta", (type,), {"__call__": refuse})
    return meta(name.rsplit(".", 1)[-1], (), {"__new__": refuse, "__reduce__": refuse, "__module__": "vqclip.inert"})


def _discarded_global(name: str) -> type:
    """A stand-in for a `DISCARDED` class: building or calling it gives an empty placeholder; nothing of it runs."""
    meta = type("DiscardedMeta", (type,), {"__call__": lambda cls, *_args, **_kwargs: object.__new__(cls)})
    return meta(name.rsplit(".", 1)[-1], (), {"__new__": lambda cls, *_args, **_kwargs: object.__new__(cls),
                                              "__setstate__": lambda self, _state: None,
                                              "__module__": "vqclip.discarded"})


def _plain_dict(*_args) -> dict:
    """A pickled defaultdict rebuilt as a plain dict (its factory is never called)."""
    return {}


# Lightning's dict with attribute access, under each package name it has had: rebuilt as a plain dict (pickle
# makes it with `cls.__new__(cls)` and fills it item by item, so `dict` itself stands in; nothing of it runs)
ATTRIBUTE_DICTS = ("lightning_fabric.utilities.data.AttributeDict", "lightning.fabric.utilities.data.AttributeDict",
                   "pytorch_lightning.utilities.parsing.AttributeDict",
                   "lightning.pytorch.utilities.parsing.AttributeDict")


def _data_globals() -> dict[str, object]:
    """Rebuilders of data only (numpy scalars, dtypes, arrays; defaultdicts, Lightning AttributeDicts) that appear
    in Lightning checkpoints."""
    import numpy as np

    multiarray = np._core.multiarray if hasattr(np, "_core") else np.core.multiarray
    found = {"numpy.dtype": np.dtype, "numpy.ndarray": np.ndarray, "collections.defaultdict": _plain_dict}
    found |= dict.fromkeys(ATTRIBUTE_DICTS, dict)
    for mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
        found[f"{mod}.scalar"] = multiarray.scalar
        found[f"{mod}._reconstruct"] = multiarray._reconstruct
    return found


def _numpy_dtype_types() -> list[type]:
    """Dtype classes that numpy arrays in a pickle rebuild with BUILD (data only)."""
    import numpy as np

    return sorted({type(np.dtype(c)) for c in "?bhilqBHILQefdgFDGUS"}, key=lambda t: t.__name__)


def torch_load_safe(path: Path) -> object:
    """Load a torch pickle (zip format) with torch's weights-only unpickler and inert stand-ins for unknown names."""
    path = Path(path)
    if not zipfile.is_zipfile(path):
        with open(path, "rb") as f:
            head = f.read(2)
        if head == b"PK":
            raise VqclipError(f"{path}: not a readable checkpoint (a damaged zip archive); re-download the file")
        if head[:1] != b"\x80":  # every pickle torch.save ever wrote opens with the PROTO opcode
            raise VqclipError(f"{path}: not a PyTorch checkpoint (neither a zip archive nor a pickle); check the "
                              "path, or re-download the file")
        try:
            with warnings.catch_warnings():  # a plain pickle.dump file: torch warns about its protocol, then fails
                warnings.filterwarnings("ignore", "Detected pickle protocol", UserWarning)
                return torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as exc:
            if "WeightsUnpickler" not in str(exc) and "GLOBAL" not in str(exc):
                raise VqclipError(f"{path}: not a readable checkpoint ({unpickler_reason(exc)}); "
                                  "re-download the file") from None
            raise UnsafeCheckpointError(
                f"{path}: refused: legacy (non-zip) pickle with non-tensor content ({unpickler_reason(exc)}); "
                "re-save it with torch>=1.6 or convert it to .safetensors"
            ) from None
        except Exception as exc:  # garbage fails anywhere in the weights-only unpickler (EOFError, IndexError, ...)
            raise VqclipError(f"{path}: not a readable checkpoint ({unpickler_reason(exc)}); "
                              "re-download the file") from None
    refuse_torchscript(path)
    try:
        unknown = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except Exception as exc:  # a truncated or corrupt archive
        raise VqclipError(f"{path}: not a readable checkpoint ({reason(exc)}); re-download the file") from None
    data = _data_globals()
    stand_ins = [(data[n], n) if n in data else (_discarded_global(n), n) if n.startswith(DISCARDED)
                 else (_inert_global(n, path), n) for n in unknown]
    if any(n.startswith("numpy") for n in unknown):
        stand_ins += _numpy_dtype_types()
    try:
        with torch.serialization.safe_globals(stand_ins):
            return torch.load(path, map_location="cpu", weights_only=True)
    except UnsafeCheckpointError:
        raise
    except pickle.UnpicklingError as exc:
        if isinstance(exc.__context__, UnsafeCheckpointError):
            raise exc.__context__ from None
        raise UnsafeCheckpointError(
            f"{path}: refused: {unpickler_reason(exc)} (the file could run code); "
            "convert it to .safetensors with a trusted tool or use another copy"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile) as exc:
        raise VqclipError(f"{path}: not a readable checkpoint ({reason(exc)}); re-download the file") from None


def refuse_torchscript(path: Path) -> None:
    """Refuse a TorchScript archive (OpenAI's original CLIP `.pt`): loading it would compile the code it holds."""
    try:
        with zipfile.ZipFile(path) as archive:
            scripted = any("/code/" in n or n.endswith("/constants.pkl") for n in archive.namelist())
    except (zipfile.BadZipFile, OSError):
        return
    if scripted:
        raise UnsafeCheckpointError(
            f"{path}: refused: a TorchScript archive (like OpenAI's original CLIP .pt) holds code, which vqclip never "
            "runs; use open_clip's weights for it (e.g. --clip-pretrained openai) or a state dict / .safetensors copy"
        )


def unpickler_reason(exc: BaseException) -> str:
    """The one informative line of torch's long weights-only error, without its advice to allowlist the global (which
    would let the file run the call it names)."""
    cause = exc.__context__ or exc
    line = next((ln.split("WeightsUnpickler error:", 1)[1] for ln in str(cause).splitlines()
                 if "WeightsUnpickler error:" in ln), None)
    text = reason(cause) if line is None else line.strip()
    return text.split(" Please use `torch.serialization")[0]


def _state_dict_of(obj: object, path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a loaded checkpoint: Lightning's `state_dict`, or the dict itself."""
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not obj:
        raise VqclipError(f"{path}: holds no state_dict of tensors; is it a model checkpoint?")
    return {k: v for k, v in obj.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}


def _cache_path(path: Path) -> Path:
    return path.with_name(path.stem + ".cache.safetensors")


def _cache_stamp(path: Path) -> str:
    st = path.stat()
    return f"{path.name}:{st.st_size}:{st.st_mtime_ns}"


def load_state_dict(path: str | os.PathLike, *, cache: bool = False) -> dict[str, torch.Tensor]:
    """All tensors of a `.safetensors`, `.ckpt`, `.pt`, `.pth` or `.bin` file, on CPU, without running its code.

    With `cache=True` a pickle is copied once to `<stem>.cache.safetensors` beside it (when writable), so later
    loads are fast and unpickle nothing; the copy is tied to the source's size and mtime.
    """
    path = Path(path)
    if not path.is_file():
        raise VqclipError(f"{missing(path, 'file')}; check the path (or fetch it with `vqclip models download`)")
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        try:
            return load_file(path, device="cpu")
        except (SafetensorError, OSError, ValueError) as exc:
            raise VqclipError(f"{path}: not a readable .safetensors file ({reason(exc)}); re-download it") from None
    if suffix not in TORCH_SUFFIXES:
        raise VqclipError(f"{path}: unknown weights format '{suffix}'; use .safetensors, .ckpt, .pt, .pth or .bin")
    cached = _cache_path(path)
    if cache and cached.is_file():
        try:
            from safetensors import safe_open

            with safe_open(cached, "pt") as f:
                fresh = (f.metadata() or {}).get(CACHE_SOURCE_KEY) == _cache_stamp(path)
            if fresh:
                return load_file(cached, device="cpu")
        except (SafetensorError, OSError):
            pass
    state = _state_dict_of(torch_load_safe(path), path)
    if cache:
        _write_cache(state, cached, _cache_stamp(path))
    return state


def _write_cache(state: dict[str, torch.Tensor], cached: Path, stamp: str) -> None:
    """Write the safetensors copy atomically; a read-only folder just skips it."""
    try:
        with atomic_path(cached) as tmp:
            save_file({k: v.contiguous().clone() for k, v in state.items()}, tmp, metadata={CACHE_SOURCE_KEY: stamp})
    except OSError as exc:
        log.debug("not caching %s: %s", cached, exc)
