"""One definition per option: a config field carries its default, help, command-line flag and allowed values, and
everything else (argparse options, the flag-to-key map, `--help`, the docs' options table) is generated from it."""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import MISSING, dataclass, fields, is_dataclass
from typing import Any, Callable, Iterator, Optional


def option(default: Any = MISSING, *, help: str, flag: Optional[str] = None, metavar: Optional[str] = None,
           choices: Optional[tuple] = None, factory: Optional[Callable[[], Any]] = None, **cli: Any):
    """A dataclass field with its documentation and command line.

    Args:
        default: the value when no layer sets it (or `factory` for a mutable one).
        help: one line saying what it does; `--help` and docs/options.md show it with the default.
        flag: the command-line option that sets it (e.g. "--steps"), or None for YAML/`--set` only.
        metavar: the placeholder `--help` shows for the value.
        choices: the allowed values (the names defined beside their implementation, e.g. OPTIMIZERS).
        **cli: how the flag reads its value: `negate=True` (a flag that sets False), `split=","` (a comma list),
            `repeat=True` (each use adds one), `nargs=N`; `unset="..."`: what a None default means, for --help;
            `label="..."`: the web page's name for it, where the key's words do not say it;
            `path=KIND`: it names a file (see `PATH_KINDS`), so the checks, the web page and the gallery treat it so.
    """
    metadata = {"help": help, "flag": flag, "metavar": metavar, "choices": tuple(choices) if choices else None, **cli}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


@dataclass(frozen=True)
class Option:
    """One leaf key of the job config: its dotted key ("cutouts.n"; "clip[].model" inside a list of sections),
    default, type and documentation."""

    key: str
    default: Any
    type: Any
    help: str
    flag: Optional[str] = None
    metavar: Optional[str] = None
    choices: Optional[tuple] = None
    cli: tuple = ()  # the extra flag settings (negate, split, repeat, nargs) as sorted (name, value) pairs

    def cli_get(self, name: str, default: Any = None) -> Any:
        return dict(self.cli).get(name, default)


def default_of(f: dataclasses.Field) -> Any:
    """A field's default value (built fresh for a factory)."""
    return f.default_factory() if f.default_factory is not MISSING else f.default  # type: ignore[misc]


def section_of(f: dataclasses.Field) -> Optional[type]:
    """The dataclass of a section field, of a list-of-sections field (its items), or None for a leaf."""
    default = default_of(f)
    if is_dataclass(default):
        return type(default)
    item = f.metadata.get("item")
    return item if is_dataclass(item) else None


def walk(cls: type, prefix: str = "", flags: Optional[dict] = None) -> Iterator[Option]:
    """Every leaf option of a config dataclass, depth first, in field order. The items of a list of sections (the
    CLIP models) take their flags from the list field's `item_flags` (a flag sets that key of each item in turn)."""
    hints = typing.get_type_hints(cls)
    for f in fields(cls):
        section = section_of(f)
        if section is not None:
            if f.metadata.get("item"):
                yield from walk(section, f"{prefix}{f.name}[].", f.metadata.get("item_flags", {}))
            else:
                yield from walk(section, f"{prefix}{f.name}.", flags)
            continue
        meta = dict(f.metadata)
        flag = meta.get("flag") if flags is None else flags.get(f.name)
        extra = tuple(sorted((k, v) for k, v in meta.items() if k not in ("help", "flag", "metavar", "choices")))
        extra += (("repeat", True),) if flags is not None and flag else ()
        yield Option(prefix + f.name, default_of(f), hints[f.name], meta.get("help", ""), flag,
                     meta.get("metavar"), meta.get("choices"), extra)


# what an option that names a file holds: an image the web page takes as an upload; a file or folder of the machine
# that runs the job, which the page never names; a model named by a name or by a file
PATH_KINDS = ("image", "server", "model")


def file_keys(cls: type, *kinds: str) -> tuple[str, ...]:
    """The keys of the options of a config dataclass that name a file (`option(..., path=KIND)`), of `kinds` (default:
    all), in field order ("clip[].model" inside a list of sections)."""
    return tuple(o.key for o in walk(cls) if o.cli_get("path") in (kinds or PATH_KINDS))


def values_at(obj: Any, key: str) -> list[tuple[str, Any]]:
    """(key with indices, value) of each value a dotted key of `file_keys` holds in a config: "clip[].model" ->
    ("clip[0].model", ...), a list value -> one per item ("image_prompts[0]", ...)."""
    head, _, rest = key.partition(".")
    name = head.removesuffix("[]")
    value = getattr(obj, name)
    if head.endswith("[]"):  # a list of sections
        return [(f"{name}[{i}].{k}", v) for i, item in enumerate(value) for k, v in values_at(item, rest)]
    if rest:
        return [(f"{name}.{k}", v) for k, v in values_at(value, rest)]
    return [(f"{name}[{i}]", v) for i, v in enumerate(value)] if isinstance(value, list) else [(name, value)]


def keys(cls: type, prefix: str = "") -> list[str]:
    """Every dotted key of a config dataclass, sections included (for 'did you mean' hints)."""
    out = []
    for f in fields(cls):
        out.append(prefix + f.name)
        section = section_of(f)
        if section is not None and not f.metadata.get("item"):
            out += keys(section, prefix + f.name + ".")
    return out
