"""docs/options.md, generated from the config fields: `python -m vqclip.cli.options_doc > docs/options.md`."""

from __future__ import annotations

from ..config import GenerateConfig
from ..config.fields import walk
from .options import _shown


def options_markdown() -> str:
    """docs/options.md: every key of a job, with its flag, default, allowed values and what it does (generated from the
    fields; `python -m vqclip.cli.options_doc > docs/options.md`)."""
    lines = ["# Options", "", "Every key of a job, as YAML writes it (`cutouts.n`), with the command-line flag that sets "
             "it, its default and what it does. Generated from the config fields (`vqclip/config/job.py`) by "
             "`python -m vqclip.cli.options_doc > docs/options.md`; a test fails when it is out of date. Keys without a "
             "flag are set in a job YAML or with `--set KEY=VALUE`; `clip[i]` are the items of the `clip:` list.", "",
             "| key | flag | default | what |", "|---|---|---|---|"]
    for o in walk(GenerateConfig):
        key = o.key.replace("[]", "[i]")
        flag = f"`{o.flag}`" if o.flag else ""
        shown = _shown(o.default) or '""'
        default = f"`{shown}`"
        what = o.help + (f" ({', '.join(o.choices)})" if o.choices else "")
        what = what.replace("|", "\\|")  # a table cell: escape the prompt syntax's bar
        lines.append(f"| `{key}` | {flag} | {default} | {what} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(options_markdown(), end="")
