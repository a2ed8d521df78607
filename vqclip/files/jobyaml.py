"""Job YAML files read as written: strings stay literal, `1e-3` is a number, a repeated key is an error."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from ..errors import VqclipError, missing, reason


class _JobLoader(yaml.SafeLoader):
    """Job YAML as written: strings stay literal (no `${...}`), `1e-3` is a number, a repeated key is an error."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key, _ in node.value:
            if isinstance(key, yaml.ScalarNode):
                if key.value in seen:
                    raise yaml.constructor.ConstructorError(None, None, f"found duplicate key {key.value}",
                                                            key.start_mark)
                seen.add(key.value)
        return super().construct_mapping(node, deep)


_JobLoader.yaml_implicit_resolvers = {  # no timestamps: `prompt: 2024-01-01` is text
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
_JobLoader.add_implicit_resolver(  # YAML 1.2 exponents; PyYAML's 1.1 rules read 1e-3 as a string
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?(?:\d[\d_]*(?:\.[\d_]*)?|\.\d[\d_]*)[eE][-+]?\d+$"),
    list("-+0123456789."))


def load_value(text: str):
    """One value read as a job file reads it (`--set KEY=VALUE`): `2024-01-01` is text, `1e-3` a number."""
    return yaml.load(text, Loader=_JobLoader)


def load_yaml(path: str | Path) -> dict:
    """A job YAML file as a plain dict, or a one-line error naming the file and the line."""
    path = Path(path)
    if not path.is_file():
        raise VqclipError(missing(path, "job file"))
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.load(f, Loader=_JobLoader)  # not OmegaConf.load: it rejects `${` in plain text
    except (yaml.YAMLError, ValueError) as exc:  # the message has the line; ValueError: not UTF-8
        raise VqclipError(f"{path}: malformed YAML ({reason(exc, whole=True)})") from None
    except OSError as exc:
        raise VqclipError(f"{path}: cannot read the job file ({exc.strerror})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise VqclipError(f"{path}: expected a mapping of job keys (prompt:, steps:, ...)")
    return data
