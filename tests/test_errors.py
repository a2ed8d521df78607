"""One-line reasons for error messages, from exceptions whose text spans lines or is empty; how a message echoes a
path."""
from pathlib import Path

import pytest
import yaml

from vqclip.errors import PATH_SHOWN, VqclipError, cut_path, missing, reason, shown_path


def test_reason_is_the_first_non_blank_line():
    assert reason(RuntimeError("\n  first line  \nsecond line")) == "first line"


def test_reason_whole_folds_every_line_so_a_yaml_error_keeps_its_position():
    try:
        yaml.safe_load("a: [1, 2\nb: 3\n")
        raise AssertionError("the YAML should not parse")
    except yaml.YAMLError as exc:
        first, whole = reason(exc), reason(exc, whole=True)
    assert "\n" not in whole and "line" in whole and "line" not in first


def test_reason_of_an_empty_message_is_the_type_name():
    assert reason(KeyError()) == "KeyError"
    assert reason(ValueError("   \n "), whole=True) == "ValueError"


def test_reason_is_cut_at_the_limit_between_words():
    assert reason(OSError("x" * 500)) == "x" * 200 + " ..."
    assert reason(OSError("ab cd\nef"), limit=4, whole=True) == "ab ..."
    assert reason(OSError("locate the file on the Hub"), limit=12) == "locate the ..."
    assert reason(OSError("short enough"), limit=12) == "short enough"


def test_a_long_path_keeps_its_file_name_and_a_huge_one_is_cut_in_the_middle():
    """A missing file deep in folders is named whole (an 80-character cut once hid the file name); a path longer
    than PATH_SHOWN keeps its start and its file name around '...'."""
    deep = Path(*["a-folder-with-a-long-name"] * 6, "the-file.png")  # relative: its length is this test's own
    assert 150 < len(str(deep)) <= PATH_SHOWN and not deep.exists()
    assert missing(deep, "image file") == f"{deep}: no such image file"
    assert shown_path(deep) == repr(str(deep))
    huge = "/" + "/".join(["x" * 200] * 5) + "/name.png"  # 1,000 characters, each name short enough to exist
    cut = cut_path(huge)
    assert len(cut) == PATH_SHOWN - 1 and cut.startswith("/xxx") and cut.endswith("x/name.png") and "..." in cut
    assert shown_path(huge) == repr(cut) and missing(huge, "image file") == f"{cut}: no such image file"
    too_long = "/" + "y" * 300 + "/name.png"  # a name over the filesystem's 255 bytes
    assert missing(too_long, "file") == f"{shown_path(too_long)}: is too long a name for the filesystem"
    assert "..." in shown_path(too_long) and shown_path(too_long).endswith("y/name.png'")


def test_a_config_path_deep_in_folders_is_named_whole_in_the_check(tmp_path):
    """The checks that name a file (a palette image here) show the whole path, not its first 60 characters."""
    from vqclip.config import merge_layers
    from vqclip.config.checks import check_inputs

    deep = tmp_path.joinpath(*["another-long-folder-name"] * 4, "palette.png")
    cfg = merge_layers([("t", {"prompt": "a", "palette": {"image": str(deep)}})])
    with pytest.raises(VqclipError) as info:
        check_inputs(cfg)
    assert str(deep) in str(info.value) and str(info.value).endswith("no such image file; check the path")


def test_a_path_too_long_for_the_filesystem_is_named_by_its_start_and_its_file_name():
    """The config's check refuses a path no file can have, naming it as `shown_path` does: the file name stays."""
    from vqclip.config import merge_layers

    bad = "/" + "y" * 300 + "/start.png"
    with pytest.raises(VqclipError) as info:
        merge_layers([("t", {"prompt": "a", "init": {"image": bad}})])
    assert str(info.value) == f"init.image: {shown_path(bad)} is too long a name for the filesystem; check the path"
    assert "y/start.png'" in str(info.value)
