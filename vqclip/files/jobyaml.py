"""Every YAML vqclip reads (job files, `--set` values, the page's YAML box, a run's job.yaml and batch.yaml, presets
and taming configs), read as written: strings stay literal, `1e-3` is a number, a repeated key is an error; and
bounded: a document of at most MAX_BYTES whose aliases expand to at most MAX_NODES values (counted while the document
is composed, before anything is built: a 330-byte "billion laughs" is refused at once), MAX_DEPTH levels deep."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from ..errors import VqclipError, cut, missing, reason

MAX_BYTES = 1 << 20  # a job is a few KB; a batch record of a thousand runs, a few hundred
MAX_ALIASES = 100  # `*name` references; a job uses a handful at most
MAX_NODES = 100_000  # values with every alias written out; a job has a few hundred
MAX_DEPTH = 64  # nested lists and mappings; a job nests 4 deep


class YAMLLimitError(VqclipError):
    """A YAML document over a bound (size, aliases, their expansion, depth): refused before it is built."""


class _JobLoader(yaml.SafeLoader):
    """Job YAML as written: strings stay literal (no `${...}`), `1e-3` is a number, a repeated key is an error; the
    aliases, the values they expand to and the depth are counted as the document is composed (`compose_node`)."""

    def __init__(self, stream):
        super().__init__(stream)
        self.aliases, self.nodes, self.depth = 0, 0, 0
        self.sizes: dict[int, int] = {}  # id(node) -> its values with every alias written out (set once composed)

    def compose_node(self, parent, index):
        """One node, its size (with aliases expanded) counted; an alias adds the size of the node it names."""
        if self.check_event(yaml.AliasEvent):
            name = self.peek_event().anchor
            node = super().compose_node(parent, index)
            self.aliases += 1
            if self.aliases > MAX_ALIASES:
                raise YAMLLimitError(f"uses more than {MAX_ALIASES} aliases (*name); at most {MAX_ALIASES}; expand "
                                     "them: write the values out")
            size = self.sizes.get(id(node))
            if size is None:  # the alias is inside the node it names: it never ends
                raise YAMLLimitError(f"the alias *{cut(name)} refers to itself; expand it: write the value out")
            self._count(size)
            return node
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise YAMLLimitError(f"nests lists and mappings more than {MAX_DEPTH} deep; at most {MAX_DEPTH}")
        before = self.nodes
        node = super().compose_node(parent, index)
        self.depth -= 1
        self._count(1)
        self.sizes[id(node)] = self.nodes - before
        return node

    def _count(self, size: int) -> None:
        self.nodes += size
        if self.nodes > MAX_NODES:
            raise YAMLLimitError(f"uses {self.aliases} aliases (*name) that expand to over {MAX_NODES:,} values; at "
                                 f"most {MAX_NODES:,}; expand the aliases: write the values out")

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key, _ in node.value:
            if isinstance(key, yaml.ScalarNode):
                if key.value in seen:
                    raise yaml.constructor.ConstructorError(None, None, f"found duplicate key {cut(key.value)}",
                                                            key.start_mark)
                seen.add(key.value)
        return super().construct_mapping(node, deep)


_JobLoader.yaml_implicit_resolvers = {  # no timestamps: `prompt: 2024-01-01` is text
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
_JobLoader.add_implicit_resolver(  # YAML 1.2 exponents; PyYAML's 1.1 rules read 1e-3 as a string
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?(?:\d[\d_]*(?:\.[\d_]*)?|\.\d[\d_]*)[eE][-+]?\d+$"),
    list("-+0123456789."))


def _too_big(size: int, source: str) -> YAMLLimitError:
    return YAMLLimitError(f"{source}: is {size / 1e6:.1f} MB; a YAML vqclip reads is at most {MAX_BYTES / 1e6:.1f} "
                          "MB")


def load_value(text: str, source: str = "yaml") -> Any:
    """A YAML text read as a job file reads it (a `--set KEY=VALUE` value, the page's YAML box): `2024-01-01` is text,
    `1e-3` a number. Malformed YAML raises yaml.YAMLError; a text over a bound, a one-line YAMLLimitError naming
    `source`."""
    return _load(text, source, "<unicode string>")


def _load(text: str, source: str, name: str) -> Any:
    """`load_value`, its malformed-YAML messages naming `name` (`in "PATH", line N`)."""
    if len(text) > MAX_BYTES:
        raise _too_big(len(text.encode("utf-8", "replace")), source)
    loader = _JobLoader(text)
    loader.name = name
    try:
        return loader.get_single_data()
    except YAMLLimitError as exc:
        raise YAMLLimitError(f"{source}: {exc}") from None
    finally:
        loader.dispose()


def read_yaml(path: str | Path, what: str = "YAML file") -> Any:
    """A YAML file's data (None when empty), or a one-line error naming the file: missing, unreadable, not UTF-8,
    malformed (with the line), or over a bound (size, aliases, depth)."""
    path = Path(path)
    if not path.is_file():
        raise VqclipError(missing(path, what))
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_BYTES + 1)  # never more than the bound, whatever the file claims
        if len(data) > MAX_BYTES:
            raise _too_big(max(path.stat().st_size, len(data)), str(path))
        return _load(data.decode("utf-8"), str(path), str(path))
    except (yaml.YAMLError, ValueError) as exc:  # the message has the line; ValueError: not UTF-8
        raise VqclipError(f"{path}: malformed YAML ({reason(exc, whole=True)})") from None
    except OSError as exc:
        raise VqclipError(f"{path}: cannot read the {what} ({exc.strerror})") from None


def load_yaml(path: str | Path) -> dict:
    """A job YAML file as a plain dict, or a one-line error naming the file and the line."""
    data = read_yaml(path, "job file")
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise VqclipError(f"{path}: expected a mapping of job keys (prompt:, steps:, ...)")
    return data
