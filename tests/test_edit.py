"""Masked editing and outpainting on the one run path, with the tiny models: every frame and final.png hold the init
image's pixels outside the mask's feather band bit for bit (vqgan, pixel and fft), the area inside changes, the
gradient reaches only the drawer's cells under the mask, a stopped edit resumes to the uninterrupted one, an
outpaint keeps its original half, and bad input is one line with exit code 2."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from vqclip.cli import main
from vqclip.config import MAX_SIDE, merge_layers
from vqclip.files.images import read_metadata
from vqclip.optim.objective import Objective
from vqclip.optim.state import RunState
from vqclip.runs.callbacks import StopAfter
from vqclip.runs.jobs import png_layer
from vqclip.runs.pipeline import run_job
from vqclip.runs.resume import resume_run

FEATHER = 2


def pixels(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB")).astype(int)


def band(mask: np.ndarray, pixels_: int) -> np.ndarray:
    """Where the run may change the image: the mask's non-black pixels widened by `pixels_` (chessboard)."""
    h, w = mask.shape
    padded = np.pad(mask > 0, pixels_)
    out = np.zeros((h, w), bool)
    for dy in range(2 * pixels_ + 1):
        for dx in range(2 * pixels_ + 1):
            out |= padded[dy:dy + h, dx:dx + w]
    return out


@pytest.fixture(scope="module")
def edit_files(tmp_path_factory):
    """A random 32x32 init image and a mask: a white box, a grey pixel, the rest black."""
    folder = tmp_path_factory.mktemp("edit")
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(folder / "init.png")
    mask = np.zeros((32, 32), np.uint8)
    mask[8:16, 10:22], mask[26, 4] = 255, 128
    Image.fromarray(mask).save(folder / "mask.png")
    return folder / "init.png", folder / "mask.png", mask


def generate(tmp_path, tiny_args, name, *extra) -> Path:
    out = tmp_path / name
    argv = ["generate", "a red circle", *tiny_args, "--cutn", "2", "--seed", "3", "--steps", "3", "--no-video",
            "--threads", "1", "--out", str(out), *extra]
    assert main(argv) == 0
    return out


@pytest.mark.parametrize("drawer", ["vqgan", "pixel", "fft"])
def test_every_frame_keeps_the_init_pixels_outside_the_mask_and_changes_inside(tmp_path, tiny_args, edit_files,
                                                                               drawer):
    init, mask_file, mask = edit_files
    out = generate(tmp_path, tiny_args, drawer, "--drawer", drawer, "--set", "drawer.pixel_size=4", "--init-image",
                   str(init), "--mask", str(mask_file), "--mask-feather", str(FEATHER), "--save-every", "1",
                   "--set", "init.mask_init=noise")
    original, free = pixels(init), band(mask, FEATHER)
    shown = [out / "final.png", *sorted((out / "frames").glob("*.png"))]
    assert len(shown) == 5  # final.png and frames 0..3
    for path in shown:
        image = pixels(path)
        assert (image[~free] == original[~free]).all(), path.name
        assert (image[8:16, 10:22] != original[8:16, 10:22]).any(), path.name
    # the run folder keeps the mask, and its job names that copy: a resume or --from final.png repeats the edit
    assert (pixels(out / "mask.png")[..., 0] == mask).all()
    assert yaml.safe_load((out / "job.yaml").read_text())["init"]["mask"] == str((out / "mask.png").absolute())
    assert read_metadata(out / "final.png")["config"]["init"]["mask"] == str((out / "mask.png").absolute())


@pytest.mark.parametrize("drawer, local", [("vqgan", True), ("pixel", True), ("fft", False)])
def test_the_gradient_reaches_only_the_cells_under_the_mask(tiny_job, tiny_models, edit_files, drawer, local):
    init, mask_file, _ = edit_files
    cfg = merge_layers([("tiny", tiny_job), ("edit", {"prompt": "a red circle", "seed": 1, "drawer": {
        "name": drawer, "pixel_size": 4}, "init": {"image": str(init), "mask": str(mask_file), "mask_feather": 0}})])
    objective = Objective(cfg, tiny_models, torch.device("cpu"))
    state = RunState.initial(cfg, objective.drawer, torch.device("cpu"), 1)
    image = objective.decode(state.z)
    (image * torch.rand(image.shape, generator=torch.Generator().manual_seed(0))).sum().backward()
    grad = state.z.grad.abs().sum(1)[0]  # [h,w] per cell (fft: per frequency)
    if not local:  # a spectrum has no cells: every frequency the drawer moves (up to drawer.cutoff) moves, mask or not
        assert torch.equal(grad > 0, objective.drawer.moves) and objective.drawer.moves.sum() > 20
        return
    f = objective.drawer.factor
    touched = torch.from_numpy(band(np.asarray(Image.open(mask_file)), 0)).reshape(32 // f, f, 32 // f, f).any(3).any(1)
    assert (grad[~touched] == 0).all() and (grad[touched] > 0).all()


def test_a_stopped_edit_with_best_of_n_a_story_and_two_clips_resumes_to_the_uninterrupted_one(tmp_path, tiny_job,
                                                                                             edit_files):
    init, mask_file, mask = edit_files
    clips = [tiny_job["clip"][0], {**tiny_job["clip"][0], "weight": 0.5}]
    layer = {"prompt": "a red circle ^ a blue square", "steps": 6, "seed": 2, "clip": clips,
             "candidates": {"n": 2, "steps": 0.5, "views": 2}, "cutouts": {"n": 2},
             "init": {"image": str(init), "mask": str(mask_file), "mask_feather": FEATHER, "mask_init": "blur"}}
    out = lambda name: {"dir": str(tmp_path / name), "save_every": 0, "video": False}  # noqa: E731
    cfg = lambda name: merge_layers([("tiny", tiny_job), ("edit", {**layer, "output": out(name)})])  # noqa: E731
    stopped = run_job(cfg("run"), extra_callbacks=[StopAfter(4)])
    assert stopped.interrupted and stopped.result.steps == 4
    moved = tmp_path / "moved"
    stopped.dir.rename(moved)  # a folder moved (or made on a cluster's worker) resumes with its own mask.png
    again = resume_run(moved)
    whole = run_job(cfg("whole"))
    assert torch.equal(again.result.image, whole.result.image)
    free = band(mask, FEATHER)
    assert (pixels(again.final)[~free] == pixels(init)[~free]).all()
    assert png_layer(again.final)["init"]["mask"] == str(moved / "mask.png")


def test_an_outpaint_keeps_the_original_half_bit_for_bit(tmp_path, tiny_args):
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(tmp_path / "o.png")
    out = generate(tmp_path, tiny_args, "wide", "--size", "64", "64", "--init-image", str(tmp_path / "o.png"),
                   "--extend", "0", "0", "64", "0", "--steps", "2", "--save-every", "0")
    final, original = pixels(out / "final.png"), pixels(tmp_path / "o.png")
    assert final.shape == (64, 128, 3)
    assert (final[:, :64] == original).all()
    stretched = np.repeat(original[:, -1:], 64, axis=1)  # what the new half held before the run: the edge, stretched
    assert (final[:, 64 + 8:] != stretched[:, 8:]).mean() > 0.5


def test_the_api_takes_a_mask_as_an_image_or_a_tensor(tiny_vqgan, tiny_clip, edit_files):
    import vqclip

    init, mask_file, mask = edit_files
    pipe = vqclip.Pipeline.from_files(*tiny_vqgan, clip={"model": str(tiny_clip[0]), "pretrained": str(tiny_clip[1])},
                                      device="cpu")
    job = {"init": {"image": str(init), "mask_feather": FEATHER}, "size": [32, 32], "cutouts": {"n": 2}, "steps": 2,
           "seed": 4, "threads": 1}
    a = pipe("a red circle", mask=Image.fromarray(mask), **job)
    b = pipe("a red circle", mask=torch.from_numpy(mask / 255.0), **job)
    first, second = np.asarray(a.images[0]).astype(int), np.asarray(b.images[0]).astype(int)
    free = band(mask, FEATHER)
    assert (first[~free] == pixels(init)[~free]).all() and (first[free] != pixels(init)[free]).any()
    assert (first == second).all()


def bad_inputs(tmp_path, init, mask_file) -> dict:
    (tmp_path / "notes.txt").write_text("not an image")
    Image.new("L", (8, 8)).save(tmp_path / "black.png")
    edit = ["--init-image", str(init)]
    return {
        "mask not an image": (edit + ["--mask", str(tmp_path / "notes.txt")], "not a readable image"),
        "all-black mask": (edit + ["--mask", str(tmp_path / "black.png")], "init.mask: "),
        "mask without init image": (["--mask", str(mask_file)], "init.mask: edits init.image, which is not set"),
        "extend without init image": (["--extend", "0", "0", "16", "0"], "init.extend: edits init.image"),
        "negative extend": (edit + ["--extend", "0", "-1", "0", "0"], "init.extend: expected four pixel counts >= 0"),
        "extend past the largest side": (edit + ["--extend", "0", "0", str(MAX_SIDE - 31), "0"],
                                         f"the canvas would be {MAX_SIDE + 1}x32, past the largest side {MAX_SIDE}"),
        "negative feather": (edit + ["--mask", str(mask_file), "--mask-feather", "-1"], "init.mask_feather: must be"),
        "unknown mask_init": (edit + ["--mask", str(mask_file), "--set", "init.mask_init=zero"], "init.mask_init"),
        "mask in a zoom": (edit + ["--mask", str(mask_file), "--set", "animation.mode=zoom"],
                           "init.mask: an edit keeps part of a still image and cannot be combined with a zoom video"),
        "extend in a restyle": (edit + ["--extend", "0", "0", "16", "0", "--set", "restyle.input=in.mp4"],
                                "init.extend: an edit keeps part of a still image and cannot be combined with a "
                                "restyle"),
    }


@pytest.mark.parametrize("case", ["mask not an image", "all-black mask", "mask without init image",
                                  "extend without init image", "negative extend", "extend past the largest side",
                                  "negative feather", "unknown mask_init", "mask in a zoom", "extend in a restyle"])
def test_bad_edit_input_is_one_line_and_exit_2(tmp_path, tiny_args, edit_files, capsys, case):
    argv, expected = bad_inputs(tmp_path, *edit_files[:2])[case]
    assert main(["generate", "a red circle", *tiny_args, *argv, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and expected in err[0], err
    assert not (tmp_path / "out").exists()


def test_the_edges_of_an_edits_checks_are_allowed(edit_files):
    """The largest canvas, no extension on a side and a feather of 0 pass (one past each is refused above)."""
    from vqclip.config import check

    init, mask_file, _ = edit_files
    cfg = merge_layers([("edit", {"size": [32, 32], "init": {"image": str(init), "mask": str(mask_file),
                                                              "mask_feather": 0,
                                                              "extend": [0, 0, MAX_SIDE - 32, MAX_SIDE - 32]}})])
    check(cfg)


@pytest.mark.parametrize("how", ["noise", "blur"])
def test_the_start_under_the_mask_is_what_mask_init_says(tiny_job, tiny_models, edit_files, how):
    """The pixel drawer's start is the block means of the init image outside the mask and, under it, of noise drawn
    from the run's seed (or of the image's 16x16 block means spread bilinearly)."""
    init, mask_file, mask = edit_files
    cfg = merge_layers([("tiny", tiny_job), ("edit", {"prompt": "a red circle", "drawer": {"name": "pixel",
                        "pixel_size": 4}, "init": {"image": str(init), "mask": str(mask_file), "mask_feather": 0,
                                                   "mask_init": how}})])
    objective = Objective(cfg, tiny_models, torch.device("cpu"))
    z = RunState.initial(cfg, objective.drawer, torch.device("cpu"), 7).z.detach()
    image = torch.from_numpy(pixels(init).astype(np.float32) / 255).permute(2, 0, 1)[None]
    if how == "noise":
        fill = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(7))
    else:
        means = image.reshape(1, 3, 2, 16, 2, 16).mean((3, 5))
        fill = torch.nn.functional.interpolate(means, size=(32, 32), mode="bilinear", align_corners=False)
    m = torch.from_numpy(mask.astype(np.float32) / 255)
    expect = torch.nn.functional.avg_pool2d(image * (1 - m) + fill * m, 4)
    assert torch.allclose(z, expect, atol=1e-6)


def test_a_hard_palette_snaps_only_the_edited_area(tmp_path, tiny_args, edit_files):
    """The edit is composited last: outside the mask the original's own colours, not the palette's."""
    init, mask_file, mask = edit_files
    out = generate(tmp_path, tiny_args, "palette", "--drawer", "pixel", "--set", "drawer.pixel_size=4",
                   "--init-image", str(init), "--mask", str(mask_file), "--mask-feather", "0", "--palette",
                   "red,blue", "--palette-hard", "--save-every", "0")
    image, free = pixels(out / "final.png"), band(mask, 0)
    assert (image[~free] == pixels(init)[~free]).all()
    inside = {tuple(c) for c in image[8:16, 10:22].reshape(-1, 3)}
    assert inside <= {(255, 0, 0), (0, 0, 255)}
