"""Every YAML vqclip reads goes through one bounded loader (vqclip/files/jobyaml.py): read as written (a repeated key is
an error, `1e-3` a number, a date text), and a "billion laughs" of nested aliases, a self-referring alias, a document
nested too deep or too large are refused with one line while the document is composed, before anything is built
from it: by `vqclip run`, `--dry-run`, `--set`, `vqclip resume`, the page's YAML box and gallery, the presets file,
the upscalers file and a VQGAN's config."""

from __future__ import annotations

import pytest
import yaml

from vqclip.cli import main
from vqclip.errors import VqclipError
from vqclip.files import jobyaml
from vqclip.files.jobyaml import MAX_ALIASES, MAX_DEPTH, MAX_NODES, load_value, load_yaml, read_yaml

LEVELS = "abcdefghi"
LAUGHS = ("lol: &a [lol,lol,lol,lol,lol,lol,lol,lol,lol]\n"  # nine levels of nine: 9**9 'lol's once expanded
          + "".join(f"{b}: &{b} [*{a},*{a},*{a},*{a},*{a},*{a},*{a},*{a},*{a}]\n" for a, b in zip(LEVELS, LEVELS[1:])))
FLOW_LAUGHS = "[" + ", ".join(["&a [lol,lol,lol,lol,lol,lol,lol,lol,lol]"] + [
    f"&{b} [{','.join(['*' + a] * 9)}]" for a, b in zip(LEVELS, LEVELS[1:])]) + "]"  # the same, on one line


@pytest.fixture(autouse=True)
def nothing_is_built(monkeypatch):
    """A refused document must be refused while it is composed: building any document in these tests fails them
    unless the test allows it (so a loader that lets a bomb through fails fast instead of hanging)."""
    allowed = {"on": False}
    real = jobyaml._JobLoader.construct_document

    def construct(self, node):
        if not allowed["on"]:  # no traceback: showing `node` would write the bomb out
            pytest.fail(f"a document was built ({str(node.start_mark.name)[:80]}): the bound was not enforced while "
                        "composing", pytrace=False)
        return real(self, node)

    monkeypatch.setattr(jobyaml._JobLoader, "construct_document", construct)
    # the command line's --help lists the presets' defaults, read from presets.yaml whenever a parser is built
    monkeypatch.setattr("vqclip.cli.options.preset_values", lambda: {})
    return allowed


def expanded(data) -> int:
    """Values in a loaded document with every alias written out (each key, scalar, list and mapping one)."""
    if isinstance(data, dict):
        return 1 + sum(1 + expanded(v) for v in data.values())
    if isinstance(data, list):
        return 1 + sum(expanded(v) for v in data)
    return 1


def test_the_billion_laughs_is_330_bytes_and_refused_at_once():
    assert len(LAUGHS.encode()) <= 330
    with pytest.raises(VqclipError) as info:
        load_value(LAUGHS, "job.yaml")
    assert str(info.value).startswith("job.yaml: uses ") and "aliases (*name) that expand to over 100,000 values; at " \
        "most 100,000; expand the aliases" in str(info.value)
    with pytest.raises(VqclipError, match="^yaml: uses .* aliases"):
        load_value(FLOW_LAUGHS)


def test_expansion_up_to_the_bound_is_read_and_one_value_more_refused(nothing_is_built):
    """98 aliases of a 1,000-value list, and padding: exactly MAX_NODES values read, MAX_NODES + 1 refused."""
    nothing_is_built["on"] = True

    def doc(pad: int) -> str:
        return "- &a [" + ",".join(["0"] * 999) + "]\n" + "- *a\n" * 98 + "- 1\n" * pad

    data = load_value(doc(999))
    assert expanded(data) == MAX_NODES == 100_000 and yaml.safe_load(doc(999)) == data
    with pytest.raises(VqclipError, match="expand to over 100,000 values"):
        load_value(doc(1000))


def test_at_most_100_aliases(nothing_is_built):
    nothing_is_built["on"] = True
    assert MAX_ALIASES == 100
    assert load_value("x: &x 1\ny: [" + ", ".join(["*x"] * 100) + "]\n")["y"] == [1] * 100
    with pytest.raises(VqclipError, match=r"^yaml: uses more than 100 aliases \(\*name\); at most 100; expand them"):
        load_value("x: &x 1\ny: [" + ", ".join(["*x"] * 101) + "]\n")


@pytest.mark.parametrize("text", ["a: &a [*a]", "a: &a {b: *a}", "- &a [1, [2, *a]]"])
def test_an_alias_inside_the_value_it_names_is_refused(text):
    with pytest.raises(VqclipError, match=r"^yaml: the alias \*a refers to itself; expand it"):
        load_value(text)


def test_at_most_64_levels_of_nesting(nothing_is_built):
    nothing_is_built["on"] = True
    assert MAX_DEPTH == 64
    assert load_value("[" * 63 + "1" + "]" * 63) is not None  # 63 lists and the scalar: 64 levels
    with pytest.raises(VqclipError, match="^yaml: nests lists and mappings more than 64 deep; at most 64"):
        load_value("[" * 64 + "1" + "]" * 64)
    with pytest.raises(VqclipError, match="more than 64 deep"):
        load_value("[" * 100_000)  # not a RecursionError


def test_a_document_over_the_size_bound_is_refused_before_it_is_read(tmp_path, monkeypatch, nothing_is_built):
    nothing_is_built["on"] = True
    assert jobyaml.MAX_BYTES == 1 << 20
    monkeypatch.setattr(jobyaml, "MAX_BYTES", 100)
    text = "prompt: '" + "x" * 89 + "'\n"
    assert len(text) == 100 and load_value(text) == {"prompt": "x" * 89}
    with pytest.raises(VqclipError, match=r"^yaml: is 0\.0 MB; a YAML vqclip reads is at most 0\.0 MB"):
        load_value(text + " ")
    (tmp_path / "job.yaml").write_text(text)
    assert load_yaml(tmp_path / "job.yaml") == {"prompt": "x" * 89}
    (tmp_path / "job.yaml").write_text(text + "#" * 5000)
    with pytest.raises(VqclipError, match=rf"^{tmp_path / 'job.yaml'}: is 0\.0 MB;"):
        load_yaml(tmp_path / "job.yaml")


def test_job_yaml_is_read_as_written(tmp_path, nothing_is_built):
    nothing_is_built["on"] = True
    data = load_value("a: 1e-3\nb: -2.5E+2\nc: 1e3\nd: 2024-01-01\ne: '${x}'\nf: 1.5\ng: 7\nh: ~\n")
    assert data == {"a": 0.001, "b": -250.0, "c": 1000.0, "d": "2024-01-01", "e": "${x}", "f": 1.5, "g": 7, "h": None}
    assert isinstance(data["c"], float) and isinstance(data["g"], int)
    for text in ("a: 1\na: 2\n", "o: {n: 1, n: 2}\n", "l:\n  - {k: 1}\n  - {k: 1, k: 2}\n"):
        with pytest.raises(yaml.YAMLError, match="found duplicate key"):
            load_value(text)
    (tmp_path / "bad.yaml").write_bytes(b"prompt: \xff\xfe\n")
    with pytest.raises(VqclipError, match="bad.yaml: malformed YAML"):
        load_yaml(tmp_path / "bad.yaml")
    (tmp_path / "dup.yaml").write_text("x: 1\nx: 2\n")
    with pytest.raises(VqclipError, match=rf'found duplicate key x in "{tmp_path / "dup.yaml"}", line 2'):
        load_yaml(tmp_path / "dup.yaml")
    (tmp_path / "empty.yaml").write_text("# nothing\n")
    assert load_yaml(tmp_path / "empty.yaml") == {} and read_yaml(tmp_path / "empty.yaml") is None


# ---- every reader of YAML refuses the bomb ----

@pytest.fixture
def bomb(tmp_path):
    path = tmp_path / "laughs.yaml"
    path.write_text(LAUGHS)
    return path


def one_error_line(capsys) -> str:
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


@pytest.mark.parametrize("argv", [["run"], ["run", "--dry-run"]])
def test_vqclip_run_and_dry_run_refuse_it(bomb, argv, capsys):
    assert main([*argv, str(bomb)]) == 2
    assert one_error_line(capsys).startswith(f"error: {bomb}: uses ")


def test_set_refuses_it():
    from vqclip.cli import build_parser
    from vqclip.cli.options import cli_overrides

    args = build_parser().parse_args(["generate", "x", "--set", f"prompt={FLOW_LAUGHS}"])
    with pytest.raises(VqclipError, match=r"^--set 'prompt': uses \d+ aliases"):
        cli_overrides(args)


def test_resume_refuses_a_run_whose_job_yaml_is_one(tmp_path, bomb, capsys):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "job.yaml").write_text(LAUGHS)
    assert main(["resume", str(tmp_path / "run")]) == 2
    assert " uses " in one_error_line(capsys)


def test_the_pages_yaml_box_and_gallery_refuse_it(tmp_path):
    from vqclip.ui.gallery import edit_job, list_runs
    from vqclip.ui.jobs import field_of, from_yaml

    with pytest.raises(VqclipError) as info:
        from_yaml(LAUGHS)
    assert str(info.value).startswith("yaml: uses ") and field_of(str(info.value)) == "yaml"
    for name, file in (("run", "job.yaml"), ("batch", "batch.yaml")):
        (tmp_path / name).mkdir()
        (tmp_path / name / file).write_text(LAUGHS)
    listed = {r["name"]: r for r in list_runs(tmp_path)}
    assert set(listed) == {"run", "batch"} and "prompt" not in listed["run"] and "keys" not in listed["batch"]
    with pytest.raises(VqclipError, match="uses .* aliases"):
        edit_job(tmp_path, tmp_path / "run")


def test_presets_upscalers_and_vqgan_configs_refuse_it(bomb):
    from vqclip.models.presets import load_presets_file
    from vqclip.models.upscalers import load_upscalers_file
    from vqclip.nets.vqgan import vqgan_spec

    for read in (load_presets_file, load_upscalers_file, vqgan_spec):
        with pytest.raises(VqclipError, match=rf"^{bomb}: uses .* aliases"):
            read(bomb)
