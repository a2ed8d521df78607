"""One definition per option (vqclip/config/fields.py): a field carries its default, help, flag and choices, and
`walk` / `keys` list every option of a config, on a small config written here."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from vqclip.config.fields import Option, default_of, keys, option, section_of, walk
from vqclip.config.job import GenerateConfig


@dataclass
class Item:
    name: str = option("a", help="the name", metavar="N")
    weight: float = option(1.0, help="its weight")


@dataclass
class Inner:
    depth: int = option(3, help="how deep", flag="--depth", metavar="D", choices=(1, 2, 3))
    tags: list[str] = option(help="tags", flag="--tags", split=",", factory=lambda: ["x"])


@dataclass
class Outer:
    size: int = option(8, help="the size", flag="--size")
    inner: Inner = option(help="a section", factory=Inner)
    items: list[Item] = option(help="a list of sections", factory=list, item=Item,
                               item_flags={"name": "--item-name"})
    note: Optional[str] = option(None, help="a note", unset="nothing")


def test_walk_lists_every_leaf_depth_first_in_field_order_with_its_documentation():
    found = list(walk(Outer))
    assert [o.key for o in found] == ["size", "inner.depth", "inner.tags", "items[].name", "items[].weight", "note"]
    size, depth, tags, name, weight, note = found
    assert size == Option("size", 8, int, "the size", "--size", None, None, ())
    assert (depth.flag, depth.metavar, depth.choices, depth.type) == ("--depth", "D", (1, 2, 3), int)
    assert tags.default == ["x"] and tags.cli_get("split") == "," and tags.type == list[str]
    assert (name.flag, name.cli_get("repeat"), name.metavar) == ("--item-name", True, "N")  # a flag per item
    assert (weight.flag, weight.cli_get("repeat")) == (None, None)  # no item flag: YAML or --set only
    assert note.cli == (("unset", "nothing"),) and note.cli_get("missing", 5) == 5 and note.type == Optional[str]


def test_keys_name_sections_and_their_keys_not_the_keys_of_list_items():
    assert keys(Outer) == ["size", "inner", "inner.depth", "inner.tags", "items", "note"]
    job = keys(GenerateConfig)
    assert {"cutouts", "cutouts.n", "output.upscale", "output.upscale.tile", "clip", "story"} <= set(job)
    assert not any(k.startswith(("clip.", "story.")) for k in job)


def test_a_factory_default_is_built_fresh_and_sections_are_found():
    field = Outer.__dataclass_fields__
    inner, items, size = field["inner"], field["items"], field["size"]
    assert default_of(inner) == Inner() and default_of(inner) is not default_of(inner)
    assert section_of(inner) is Inner and section_of(items) is Item and section_of(size) is None
    a, b = Outer(), Outer()
    a.inner.tags.append("y")
    assert b.inner.tags == ["x"]  # no default shared between configs


def test_every_job_option_has_help_and_a_flag_starts_with_two_dashes():
    for o in walk(GenerateConfig):
        assert o.help.strip(), o.key
        assert o.flag is None or (o.flag.startswith("--") and " " not in o.flag), o.key
    flags = [o.flag for o in walk(GenerateConfig) if o.flag]
    assert len(flags) == len(set(flags))  # one key per flag


def test_the_job_offers_exactly_grid_samples_padding_modes_and_sides_up_to_4096():
    import torch
    import torch.nn.functional as F

    from vqclip.config.job import GRID_PADDINGS, MAX_SIDE, PADDINGS

    grid = torch.zeros(1, 1, 1, 2)
    for mode in GRID_PADDINGS:
        F.grid_sample(torch.ones(1, 1, 2, 2), grid, padding_mode=mode, align_corners=False)
    assert set(GRID_PADDINGS) == {"zeros", "border", "reflection"} and MAX_SIDE == 4096
    assert set(PADDINGS) == {*GRID_PADDINGS, "outpaint"}  # outpaint: vqclip.modes.zoom
