"""The AUTOMATIC1111 API (`/sdapi/v1`) on a real uvicorn (127.0.0.1): requests map onto the job as documented, the
PNGs carry `parameters`, hostile input is a one-line 4xx; and a published client of that API (webuiapi) works
unchanged: txt2img, img2img with a mask, progress while running, interrupt."""

from __future__ import annotations

import base64
import io
import json
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from PIL import Image

pytest.importorskip("fastapi", reason="the web page's server needs vqclip[ui]")
pytest.importorskip("uvicorn", reason="the web page's server needs vqclip[ui]")

from uiserver import LiveServer  # noqa: E402

import vqclip.mini  # noqa: E402

from vqclip.files.infotext import parse_parameters  # noqa: E402
from vqclip.nets.load import ModelCache  # noqa: E402
from vqclip.runs.plan import plan  # noqa: E402
from vqclip.ui.server import FORM_SLACK  # noqa: E402
from vqclip.ui.a1111 import MAX_IMAGES, Refused, finals, image_bytes, to_job  # noqa: E402

SMALL = {"width": 32, "height": 32, "steps": 2}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = LiveServer(tmp_path_factory.mktemp("a1111") / "outputs", device="cpu", cache=ModelCache(),
                     max_upload=64 << 10).start()
    try:
        assert srv.request("POST", "/sdapi/v1/options", {"sd_model_checkpoint": "mini"})[0] == 200
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def batch(server):
    """One txt2img of two images, with fields vqclip has no use for."""
    body = {"prompt": "a red circle", "negative_prompt": "text", "seed": 7, "batch_size": 2, "n_iter": 1,
            "sampler_name": "Euler a", "cfg_scale": 7, "override_settings": {"CLIP_stop_at_last_layers": 2}, **SMALL}
    status, answer = server.request("POST", "/sdapi/v1/txt2img", body)
    assert status == 200, answer
    return answer


def png(size=(32, 32), color=(200, 30, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG")
    return buffer.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_txt2img_gives_one_png_per_image_with_the_requested_prompt_seed_steps_and_size(batch):
    assert len(batch["images"]) == 2
    seen = []
    for data in batch["images"]:
        with Image.open(io.BytesIO(base64.b64decode(data))) as im:
            assert im.format == "PNG" and im.size == (32, 32)
            prompt, negative, params = parse_parameters(im.text["parameters"])
        assert (prompt, negative, params["Steps"], params["Size"], params["Model"]) == \
            ("a red circle", "text", "2", "32x32", "mini")
        seen.append(int(params["Seed"]))
    assert seen == [7, 8]  # batch_size images: seeds s, s+1 as `n` gives them
    info = json.loads(batch["info"])
    assert info["all_seeds"] == [7, 8] and info["seed"] == 7 and info["interrupted"] is False
    assert len(info["infotexts"]) == 2 and info["infotexts"][1].endswith(parse_parameters(info["infotexts"][1])[2]
                                                                         ["Version"])


def test_txt2img_lists_what_has_no_meaning_for_vqgan_clip_as_ignored(batch):
    info = json.loads(batch["info"])
    assert "sampler_name" in info["ignored"] and "cfg_scale" in info["ignored"]
    assert "override_settings.CLIP_stop_at_last_layers" in info["ignored"]
    assert not {"prompt", "seed", "steps", "width", "batch_size"} & set(info["ignored"])
    assert batch["parameters"]["cfg_scale"] == 7  # the request, echoed as A1111 does


def test_requests_map_onto_the_job():
    job, ignored = to_job({"prompt": " a cat ", "negative_prompt": "dog", "steps": 5, "seed": -1, "width": 40,
                           "height": 24, "batch_size": 2, "n_iter": 3, "tiling": True, "eta": 1}, "mini")
    assert job == {"prompt": "a cat", "model": "mini", "steps": 5, "size": [40, 24], "seed": None, "n": 6,
                   "negative": ["dog"], "tile": True}
    assert ignored == ["eta"]
    assert to_job({"prompt": "x", "seed": 0}, "mini")[0]["seed"] == 0
    assert to_job({"prompt": "x", "override_settings": {"sd_model_checkpoint": "mini [abc]"}}, "none")[0]["model"] \
        == "mini"


@pytest.mark.parametrize("n_iter, ok", [(MAX_IMAGES, True), (MAX_IMAGES + 1, False)])
def test_images_per_request_are_bounded(n_iter, ok):
    if ok:
        assert to_job({"prompt": "x", "n_iter": n_iter}, "mini")[0]["n"] == MAX_IMAGES
    else:
        with pytest.raises(Refused, match="batch_size x n_iter"):
            to_job({"prompt": "x", "n_iter": n_iter}, "mini")


@pytest.mark.parametrize("body, message", [
    ({"prompt": "x", "steps": 0}, "steps: expected an integer >= 1"),
    ({"prompt": "x", "steps": -3}, "steps: expected an integer >= 1"),
    ({"prompt": "x", "steps": "ten"}, "steps: expected an integer"),
    ({"prompt": "x", "seed": -2}, "seed: expected an integer >= -1"),
    ({"prompt": "x", "width": True}, "width: expected an integer"),
    ({"prompt": "x", "batch_size": 0}, "batch_size: expected an integer >= 1"),
    ({"prompt": ""}, "prompt: empty"),
    ({"prompt": 3}, "prompt: expected a string"),
    ({"prompt": "x", "override_settings": {"sd_model_checkpoint": "../../etc/passwd"}}, "no preset"),
])
def test_bad_fields_are_refused_naming_the_field(body, message):
    with pytest.raises(Refused, match=message.replace("(", r"\(")):
        to_job(body, "mini")


def test_a_batch_answers_its_images_in_seed_order_and_skips_those_never_made(tmp_path):
    batch = plan([("job", {"prompt": "x", "model": "mini", "n": 12, "seed": 5})])[0]
    for m in batch.members[:11]:  # the 12th was interrupted before it ran
        (tmp_path / m.name).mkdir()
        (tmp_path / m.name / "final.png").write_text(str(m.cfg.seed))
    job = SimpleNamespace(dir=tmp_path, plan=batch)
    assert [int(f.read_text()) for f in finals(job)] == list(range(5, 16))
    (tmp_path / "final.png").write_text("one run")
    assert finals(SimpleNamespace(dir=tmp_path, plan=batch.members[0].cfg)) == [tmp_path / "final.png"]
    assert finals(SimpleNamespace(dir=None, plan=batch)) == []


def test_base64_images_are_bounded_before_decoding():
    data = b"\x89PNG" + bytes(95)  # 99 bytes: 132 base64 characters
    assert image_bytes(b64(data), "x", 99) == data
    assert image_bytes("data:image/png;base64," + b64(data), "x", 99) == data
    with pytest.raises(Refused, match="limit") as refused:
        image_bytes(b64(data + b"\0\0\0"), "x", 99)
    assert refused.value.status == 413
    with pytest.raises(Refused, match="not base64"):
        image_bytes("@@@@", "x", 99)


@pytest.mark.parametrize("path, body, status, message", [
    ("txt2img", {"prompt": "x", "steps": -1, **{k: 32 for k in ("width", "height")}}, 400, "steps"),
    ("txt2img", {"prompt": "x", "steps": 2, "width": 100000, "height": 32}, 400, "size"),
    ("txt2img", [1, 2], 400, "JSON object"),
    ("txt2img", b"{\"prompt\": ", 400, "not valid JSON"),
    ("txt2img", {"prompt": "x", "seed": 2**70, **SMALL}, 400, "seed"),
    ("txt2img", {"prompt": "a cat@/etc/mask.png", **SMALL}, 400, "cannot read mask files of the server"),
    ("txt2img", {"prompt": "x", "negative_prompt": "y@/etc/mask.png", **SMALL}, 400, "cannot read mask files"),
    ("img2img", {"prompt": "x", **SMALL}, 400, "init_images"),
    ("img2img", {"prompt": "x", "init_images": [b64(b"not an image")], **SMALL}, 400, "not an image"),
    ("img2img", {"prompt": "x", "init_images": [b64(png())], "denoising_strength": 1.5, **SMALL}, 400,
     "denoising_strength"),
    ("img2img", {"prompt": "x", "init_images": [b64(bytes(70 << 10))], **SMALL}, 413, "limit"),
    ("img2img", {"prompt": "x", "init_images": [b64(png())], "mask": b64(b"GIF89a"), **SMALL}, 400, "mask"),
    ("options", {"sd_model_checkpoint": "nonexistent"}, 400, "no preset"),
])
def test_hostile_requests_are_one_line_4xx_errors(server, path, body, status, message):
    if isinstance(body, bytes):
        got, answer = server.request("POST", f"/sdapi/v1/{path}", data=body,
                                     headers={"Content-Type": "application/json"})
    else:
        got, answer = server.request("POST", f"/sdapi/v1/{path}", body)
    assert got == status and message in answer["error"] and "\n" not in answer["error"], answer


@pytest.mark.parametrize("extra, status", [(0, 400), (1, 413)])
def test_a_body_over_the_cap_is_refused_unread(server, extra, status):
    cap = 3 * (64 << 10) + FORM_SLACK  # two images of the upload limit in base64 (4/3 each), and the fields
    got, answer = server.request("POST", "/sdapi/v1/txt2img", data=b"{" + b" " * (cap - 2 + extra) + b"}",
                                 headers={"Content-Type": "application/json"})
    assert got == status and ("KB" if status == 413 else "prompt: empty") in answer["error"]


def test_options_and_models_list_the_presets(server):
    status, models = server.request("GET", "/sdapi/v1/sd-models")
    assert status == 200 and "mini" in [m["title"] for m in models]
    assert server.request("GET", "/sdapi/v1/options")[1]["sd_model_checkpoint"] == "mini"
    status, _ = server.request("POST", "/sdapi/v1/options", {"sd_model_checkpoint": "nonexistent"})
    assert status == 400 and server.request("GET", "/sdapi/v1/options")[1]["sd_model_checkpoint"] == "mini"


def test_progress_when_idle_is_zero(server):
    status, progress = server.request("GET", "/sdapi/v1/progress")
    assert status == 200 and progress["progress"] == 0 and progress["current_image"] is None


@pytest.fixture(scope="module")
def client(server):
    webuiapi = pytest.importorskip("webuiapi", reason="the published A1111 client is in vqclip[test]")
    return webuiapi.WebUIApi(host="127.0.0.1", port=int(server.url.rsplit(":", 1)[1]))


def test_a_published_client_makes_an_image_with_its_parameters(client):
    result = client.txt2img(prompt="a blue square", seed=3, steps=2, width=42, height=30, cfg_scale=5)
    with open(Path(vqclip.mini.__file__).parent / "weights" / "vqgan.yaml") as f:  # the size rule: multiples of
        factor = 2 ** (len(yaml.safe_load(f)["model"]["params"]["ddconfig"]["ch_mult"]) - 1)  # the VQGAN's factor
    size = tuple(max(factor, round(s / factor) * factor) for s in (42, 30))
    assert len(result.images) == 1 and result.image.size == size != (42, 30)
    assert (result.info["width"], result.info["height"]) == size
    prompt, _, params = parse_parameters(result.image.info["parameters"])
    assert (prompt, params["Seed"], params["Steps"]) == ("a blue square", "3", "2")
    assert "cfg_scale" in result.info["ignored"]


@pytest.mark.parametrize("invert", [0, 1])
def test_a_published_client_edits_under_a_mask_keeping_the_black_part(client, invert):
    init = Image.new("RGB", (32, 32), (220, 20, 20))
    init.paste((20, 20, 220), (16, 0, 32, 32))
    mask = Image.new("L", (32, 32), 255 * invert)
    mask.paste(255 * (1 - invert), (16, 0, 32, 32))  # A1111's rule, as vqclip's: white changes, black is kept
    result = client.img2img(images=[init], mask_image=mask, mask_blur=0, prompt="a green field", steps=4,
                            denoising_strength=0.5, width=32, height=32, seed=1, inpainting_mask_invert=invert)
    params = parse_parameters(result.image.info["parameters"])[2]
    assert "init_images" not in result.parameters and result.parameters["denoising_strength"] == 0.5
    assert params["Steps"] == "2"  # denoising_strength: the share of the steps that run, as A1111 runs them
    out = result.image.convert("RGB")
    kept = [out.getpixel((x, y)) for x in range(12) for y in range(32)]
    assert all(abs(a - b) <= 2 for p in kept for a, b in zip(p, (220, 20, 20)))
    changed = [out.getpixel((x, y)) for x in range(20, 32) for y in range(32)]
    assert any(abs(a - b) > 10 for p in changed for a, b in zip(p, (20, 20, 220)))


def test_a_published_client_sees_progress_and_interrupts_a_run(client, server):
    answer = {}
    thread = threading.Thread(target=lambda: answer.setdefault(
        "result", client.txt2img(prompt="a red circle", steps=5000, width=32, height=32, seed=2)))
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while True:
            progress = client.get_progress()
            if progress["state"]["sampling_step"] >= 2 and progress["current_image"]:
                break
            assert time.monotonic() < deadline, progress
            time.sleep(0.05)
        assert progress["state"]["sampling_steps"] == 5000
        done = progress["state"]["sampling_step"] / 5000
        assert progress["progress"] > 0 and progress["progress"] == pytest.approx(done)
        with Image.open(io.BytesIO(base64.b64decode(progress["current_image"]))) as preview:
            assert preview.size == (32, 32)
    finally:
        client.interrupt()
        thread.join(20)
        went_on = thread.is_alive()
        for job in server.queue.jobs():  # whatever interrupt did, the run stops before the server does
            server.queue.cancel(job.id)
        thread.join(30)
    assert not went_on, "the interrupted run went on"
    result = answer["result"]
    params = parse_parameters(result.image.info["parameters"])[2]
    assert result.info["interrupted"] is True and params["Stopped"] == "true"
    assert 2 <= int(params["Steps done"]) < 5000


def test_a_request_no_checking_process_is_free_for_is_a_503_to_retry(tmp_path):
    from vqclip.ui.bounded import Checker

    checker = Checker(at_once=0, wait=0.05)  # never a free slot
    srv = LiveServer(tmp_path / "outputs", device="cpu", checker=checker).start()
    try:
        status, answer = srv.request("POST", "/sdapi/v1/txt2img", {"prompt": "x", **SMALL})
    finally:
        srv.stop()
        checker.close()
    assert status == 503 and "busy" in answer["error"]


def test_png_info_reads_back_a_runs_parameters_and_job(server, batch):
    data = base64.b64decode(batch["images"][0])
    with Image.open(io.BytesIO(data)) as im:
        chunks = dict(im.text)
    sent = {"image": "data:image/png;base64," + batch["images"][0]}  # a data URL, as browsers' clients send it
    status, info = server.request("POST", "/sdapi/v1/png-info", sent)
    assert status == 200 and set(info) == {"info", "items", "parameters"}
    assert info["info"] == chunks["parameters"] and "parameters" not in info["items"]
    assert json.loads(info["items"]["vqclip"])["config"]["prompt"] == "a red circle"
    p = info["parameters"]
    assert (p["Prompt"], p["Negative prompt"], p["Seed"], p["Steps"], p["Size"]) == ("a red circle", "text", "7", "2",
                                                                                   "32x32")


def test_png_info_parses_an_a1111_infotext_and_answers_an_image_without_one(server):
    from PIL.PngImagePlugin import PngInfo

    text = PngInfo()
    text.add_text("parameters", "a cat, oil painting\nNegative prompt: blurry, text\nSteps: 20, Sampler: Euler a, "
                                "CFG scale: 7, Seed: 1234, Size: 512x768, Model: sd15")
    text.add_text("Software", "A1111")
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, format="PNG", pnginfo=text)
    status, info = server.request("POST", "/sdapi/v1/png-info", {"image": b64(buffer.getvalue())})
    assert status == 200 and info["items"] == {"Software": "A1111"}
    assert info["parameters"] == {"Prompt": "a cat, oil painting", "Negative prompt": "blurry, text", "Steps": "20",
                                  "Sampler": "Euler a", "CFG scale": "7", "Seed": "1234", "Size": "512x768",
                                  "Model": "sd15"}
    assert server.request("POST", "/sdapi/v1/png-info", {"image": b64(png())})[1] == {"info": "", "items": {},
                                                                                       "parameters": {}}
    assert server.request("POST", "/sdapi/v1/png-info", {"image": " "})[1] == {"info": "", "items": {},
                                                                              "parameters": {}}


@pytest.mark.parametrize("body, status, message", [
    ({}, 400, "image: expected a base64 image"), ({"image": 3}, 400, "image: expected a base64 image"),
    ({"image": "!!not base64!!"}, 400, "not base64"), ({"image": b64(b"GIF89a not really")}, 400, "not a readable"),
    ({"image": b64(bytes(70 << 10))}, 413, "limit"), ([1], 400, "JSON object"),
])
def test_hostile_png_info_requests_are_one_line_4xx(server, body, status, message):
    got, answer = server.request("POST", "/sdapi/v1/png-info", body)
    assert got == status and message in answer["error"] and "\n" not in answer["error"], answer


def test_a_published_client_lists_the_optimisers_as_samplers_and_the_upscaler_presets(client):
    from vqclip.models.upscalers import BUILTIN_FILE

    listed = client.get_samplers()
    assert all(set(s) == {"name", "aliases", "options"} for s in listed)  # A1111's SamplerItem
    assert {"Adam", "SGD"} <= {s["name"] for s in listed}
    presets = yaml.safe_load(BUILTIN_FILE.read_text())["upscalers"]
    ups = client.get_upscalers()
    assert all(set(u) == {"name", "model_name", "model_path", "model_url", "scale"} for u in ups)  # UpscalerItem
    assert {u["name"]: u["scale"] for u in ups} == {name: float(p["scale"]) for name, p in presets.items()}
    assert all(u["model_path"] is None and u["model_url"] == presets[u["name"]]["file"]["urls"][0] for u in ups)


@pytest.mark.parametrize("name, optimizer", [("SGD", "sgd"), ("adamw", "adamw"), (" RAdam ", "radam"),
                                             ("Euler a", None), ("DPM++ 2M", None), (3, None)])
def test_a_sampler_naming_an_optimiser_picks_it_and_any_other_is_ignored(name, optimizer):
    job, ignored = to_job({"prompt": "x", "sampler_name": name}, "mini")
    assert job.get("optimizer") == (None if optimizer is None else {"name": optimizer})
    assert ("sampler_name" in ignored) == (optimizer is None)
