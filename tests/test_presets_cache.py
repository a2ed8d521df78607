"""Presets files are parsed once per text: an edited file (even one of the same size) is read again, and what a
caller does to the presets it got never reaches the next caller."""

from __future__ import annotations

from vqclip.models.presets import load_presets_file

TEXT = """presets:
  {name}:
    description: a test preset
    vqgan: {{config: {{filename: c.yaml, urls: [http://127.0.0.1/c.yaml]}},
            checkpoint: {{filename: c.ckpt, urls: [http://127.0.0.1/c.ckpt]}}}}
    defaults: {{steps: {steps}}}
"""


def test_an_edited_file_is_read_again_and_a_callers_change_stays_its_own(tmp_path):
    path = tmp_path / "presets.yaml"
    path.write_text(TEXT.format(name="aaaa", steps=111))
    first = load_presets_file(path)
    assert first["aaaa"].defaults["steps"] == 111
    first["aaaa"].defaults["steps"] = 5  # a caller's change
    first.pop("aaaa")
    assert load_presets_file(path)["aaaa"].defaults["steps"] == 111
    path.write_text(TEXT.format(name="bbbb", steps=222))  # the same size, written at once
    again = load_presets_file(path)
    assert list(again) == ["bbbb"] and again["bbbb"].defaults["steps"] == 222
