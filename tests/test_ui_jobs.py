"""A page's job may name no file of the server (docs/ui.md, Safety): model names are names, not files (every weights
suffix, any case), images are uploads (`upload:` and 32 hex digits, an optional weight and stop), the keys that name
files stay empty, sweeps are checked as the job; and each size limit of a job holds at its boundary, on both sides."""

from __future__ import annotations

import pytest

from vqclip.errors import VqclipError
from vqclip.ui.jobs import MAX_DEPTH, MAX_VALUES, MAX_YAML, check_safe, check_size, from_yaml, plan

HEX = "0123456789abcdef" * 2


def upload(upload_id: str) -> str:
    return f"/srv/outputs/.uploads/{upload_id}.png"


def refused(job: dict, message: str) -> None:
    with pytest.raises(VqclipError) as exc:
        check_safe(job, upload)
    assert message in str(exc.value) and "\n" not in str(exc.value)


@pytest.mark.parametrize("suffix", ["json", "safetensors", "pt", "pth", "bin", "ckpt", "yaml", "yml", "PT", "Bin"])
@pytest.mark.parametrize("key", ["clip.model", "clip.pretrained", "candidates.clip.pretrained", "output.upscale.model",
                                 "model"])
def test_a_model_named_by_a_weights_files_name_is_refused(key, suffix):
    *parents, last = key.split(".")
    job: dict = {last: f"weights.{suffix}"}
    for p in reversed(parents):
        job = {p: [job] if p == "clip" else job}
    refused(job, "is not a model name; the page can use presets and open_clip names, not files of the server")


@pytest.mark.parametrize("name, ok", [
    ("ViT-B-32", True), ("laion2b_s34b_b79k", True), ("RN50x4", True), ("imagenet-16384", True), ("a" * 100, True),
    ("a" * 101, False), ("-rf", False), (".hidden", False), ("a/b", False), ("hf-hub:org/repo", False),
    ("local-dir:/srv", False), ("a b", False), ("~root", False), (7, False),
])
def test_model_names_are_names(name, ok):
    job = {"clip": [{"model": name, "pretrained": name}], "model": name}
    if ok:
        assert check_safe(job, upload) == job
    else:
        refused(job, "is not a model name")


@pytest.mark.parametrize("value, path", [
    (f"upload:{HEX}", f"/srv/outputs/.uploads/{HEX}.png"),
    (f"upload:{HEX}:0.5", f"/srv/outputs/.uploads/{HEX}.png:0.5"),
    (f"upload:{HEX}:0.5:-1", f"/srv/outputs/.uploads/{HEX}.png:0.5:-1"),
    (f"upload:{HEX[:31]}", None), (f"upload:{HEX}0", None), (f"upload:{HEX.upper()}", None),
    (f"upload:{HEX}/../../etc/passwd", None), (f"upload:{HEX}:1:2:3", None), (f"upload:../{HEX}", None),
    (f"/srv/outputs/.uploads/{HEX}.png", None), (f"UPLOAD:{HEX}", None), ([f"upload:{HEX}"], None), (3, None),
])
def test_images_are_uploads_by_id_only(value, path):
    for key in ("init", "image_prompts"):
        job = {"init": {"image": value}} if key == "init" else {"image_prompts": [value]}
        if path is None:
            refused(job, "the page can use only images uploaded to it (upload:ID)")
        else:
            checked = check_safe(job, upload)
            assert (checked["init"]["image"] if key == "init" else checked["image_prompts"]) == (
                path if key == "init" else [path])
    if path is not None:  # one image prompt given alone is a list of one
        assert check_safe({"image_prompts": value}, upload) == {"image_prompts": [path]}


def test_keys_that_name_files_may_stay_empty_and_nothing_else():
    empty = {"vqgan": {"config": None, "checkpoint": ""}, "guide": {"model": None, "weights": None},
             "restyle": {"input": ""}, "output": {"dir": None}, "init": {"image": ""}, "image_prompts": []}
    checked = check_safe(empty, upload)
    assert checked["init"]["image"] is None and checked["image_prompts"] == []
    for job, key in (({"guide": {"model": "g.json"}}, "guide.model"), ({"restyle": {"input": ["a.mp4"]}}, "restyle.input"),
                     ({"vqgan": {"config": 0}}, "vqgan.config"), ({"output": {"dir": "."}}, "output.dir")):
        refused(job, f"{key}: ")
    refused({1: "x"}, "job keys are names")


@pytest.mark.parametrize("sweep, message", [
    ({"vqgan.checkpoint": ["/x.ckpt"]}, "vqgan.checkpoint: the page cannot name files"),
    ({"init.image": "/etc/passwd"}, "init.image: the page can use only images uploaded"),
    ({"image_prompts": [["/etc/passwd"]]}, "image_prompts[0]: the page can use only images uploaded"),
    ({"clip.pretrained": ["w.pt"]}, "is not a model name"),
    ({"output": [{"dir": "/tmp"}]}, "output.dir: runs from the page go into the server's outputs folder"),
])
def test_a_sweep_is_checked_as_the_job(sweep, message):
    refused({"prompt": "x", "sweep": sweep}, message)
    checked = check_safe({"sweep": {"init.image": [f"upload:{HEX}", None]}}, upload)
    assert checked["sweep"]["init.image"] == [f"/srv/outputs/.uploads/{HEX}.png", None]


def test_the_size_limits_hold_at_their_boundaries():
    check_size({"negative": ["x"] * (MAX_VALUES - 2)})  # the job, its list and the items: MAX_VALUES values
    with pytest.raises(VqclipError, match=rf"^job: holds over {MAX_VALUES} values"):
        check_size({"negative": ["x"] * (MAX_VALUES - 1)})
    deep: dict = {}
    node = deep
    for _ in range(MAX_DEPTH - 2):  # the job and MAX_DEPTH - 2 mappings, then a value: MAX_DEPTH levels
        node["a"] = {}
        node = node["a"]
    node["a"] = 1
    check_size(deep)
    node["a"] = [1]
    with pytest.raises(VqclipError, match=rf"^job: nested over {MAX_DEPTH} levels deep"):
        check_size(deep)
    text = "prompt: " + "a" * (MAX_YAML - len("prompt: "))
    assert from_yaml(text)["prompt"] == "a" * (MAX_YAML - 8)
    with pytest.raises(VqclipError, match=rf"^yaml: the job is {MAX_YAML + 1} characters; a job is at most {MAX_YAML}"):
        from_yaml(text + "a")


def test_a_planned_job_is_quiet_on_the_servers_device_unless_it_names_one(tiny_job):
    job = {**tiny_job, "prompt": "x", "output": {"progress": True}}
    cfg = plan(job, upload, allow_paths=True, device="cpu")
    assert cfg.device == "cpu" and cfg.output.progress is False
    assert plan({**job, "device": "auto"}, upload, allow_paths=True, device="cpu").device == "auto"
    with pytest.raises(VqclipError, match="vqgan.config: the page cannot name files"):
        plan(job, upload, device="cpu")  # the test hook off: the tiny model's files are files of the server
    with pytest.raises(VqclipError, match=f"^job: holds over {MAX_VALUES} values"):  # sized before anything else
        plan({**job, "negative": ["x"] * MAX_VALUES}, upload, allow_paths=True)
