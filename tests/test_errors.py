"""One-line reasons for error messages, from exceptions whose text spans lines or is empty."""
import yaml

from vqclip.errors import reason


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
