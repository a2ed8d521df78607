"""The ring judge of `benchmarks/ring_preset.py`: rings drawn here (several sizes, widths, colours, positions) are
rings; the mini world's filled shapes, a blank background, a broken ring, a square frame, a disk with a small hole
and a ring of another colour than the prompt's are not."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image, ImageDraw

from vqclip.mini import judge, world

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "ring_preset.py"
_spec = importlib.util.spec_from_file_location("ring_preset", _PATH)
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)


def draw(color: str, bg: str, cx: float, cy: float, r: float, width: int, kind: str = "ellipse") -> np.ndarray:
    """A 64x64 outline (ellipse or rectangle) of half-extent r, `width` px wide, drawn by PIL: uint8 [64,64,3]."""
    im = Image.new("RGB", (64, 64), world.COLORS[bg])
    getattr(ImageDraw.Draw(im), kind)((cx - r, cy - r, cx + r, cy + r), outline=world.COLORS[color], width=width)
    return np.asarray(im)


@pytest.mark.parametrize("color,bg,cx,cy,r,width", [
    ("red", "blue", 32, 32, 12, 3), ("white", "black", 22, 40, 10, 2), ("orange", "purple", 40, 26, 20, 3),
    ("black", "yellow", 31.5, 33, 16, 6)])
def test_a_drawn_ring_is_a_ring(color, bg, cx, cy, r, width):
    v = bench.ring_verdict(draw(color, bg, cx, cy, r, width), color, bg)
    assert v["ring"] and v["color"] and v["background"] and v["kind"] == "circle"
    inner = (r - width) ** 2 / r ** 2  # the hole's share of the disk, as drawn
    assert v["hole_share"] == pytest.approx(inner, abs=0.1)


def test_the_worlds_filled_shapes_and_a_blank_are_not():
    rng = np.random.default_rng(0)
    for kind in world.SHAPES:
        color = list(world.COLORS)[int(rng.integers(8))]
        sc = world.Scene(world.other_color(rng, color), (world.Shape(kind, color, 30.0, 34.0, 15.0),), 1)
        v = bench.ring_verdict(world.render(sc), color, sc.background)
        assert not v["ring"] and v["hole_share"] == 0.0 and v["kind"] == kind and v["color"] and v["background"]
    blank = np.zeros((64, 64, 3), np.uint8) + np.array(world.COLORS["blue"], np.uint8)
    assert bench.ring_verdict(blank, "red", "blue") == {"ring": False, "color": False, "background": True,
                                                         "hole_share": 0.0, "kind": None}


def test_a_ring_must_be_closed_round_hollow_and_of_the_prompts_colour():
    ring = draw("red", "blue", 32, 32, 14, 3)
    assert bench.ring_verdict(ring, "red", "blue")["ring"]
    assert not bench.ring_verdict(ring, "green", "blue")["ring"]  # the prompt's colour is not there
    broken = ring.copy()
    broken[28:37, 40:] = world.COLORS["blue"]  # a gap on the right: its hole reaches the border
    assert not bench.ring_verdict(broken, "red", "blue")["ring"]
    frame = draw("red", "blue", 32, 32, 14, 3, kind="rectangle")  # hollow, but square
    v = bench.ring_verdict(frame, "red", "blue")
    assert v["hole_share"] > bench.HOLE_SHARE and v["kind"] == "square" and not v["ring"]


def test_the_hole_must_be_a_good_share_of_the_disk():
    def disk_with_hole(hole_r: float) -> np.ndarray:
        y, x = world.pixel_centres(64, 64)
        d = np.hypot(x - 32, y - 32)
        img = np.zeros((64, 64, 3), np.uint8) + np.array(world.COLORS["blue"], np.uint8)
        img[(d <= 20) & (d > hole_r)] = world.COLORS["red"]
        return img

    shares = {h: bench.ring_verdict(disk_with_hole(h), "red", "blue") for h in (6, 9, 11, 14)}
    for h, v in shares.items():
        assert v["hole_share"] == pytest.approx(h * h / 400, abs=0.03)
        assert v["ring"] == (v["hole_share"] >= bench.HOLE_SHARE)
    assert not shares[6]["ring"] and not shares[9]["ring"] and shares[11]["ring"] and shares[14]["ring"]


def test_the_prompts_name_each_colour_on_another():
    items = bench.ring_prompts()
    assert len(items) == 12 and len({(c, b) for _, c, b in items}) == 12
    assert all(c != b and q == f"{world._a(c)} {c} ring on {world._a(b)} {b} background" for q, c, b in items)
    assert {c for _, c, _ in items} == set(world.COLORS)


def test_the_start_disc_is_a_filled_centred_disc_of_the_rings_colour_that_the_judge_calls_a_circle():
    img = np.asarray(bench.disc_image("red", "blue"))
    red = (img == np.array(world.COLORS["red"], np.uint8)).all(-1)
    assert red.sum() + (img == np.array(world.COLORS["blue"], np.uint8)).all(-1).sum() == 64 * 64
    ys, xs = np.nonzero(red)
    assert abs(red.sum() - np.pi * 16 ** 2) < 0.03 * np.pi * 16 ** 2  # area of a disc of radius 16
    assert (ys.min(), ys.max(), xs.min(), xs.max()) == (16, 47, 16, 47)  # centred on 31.5
    v = bench.ring_verdict(img, "red", "blue")
    assert v["kind"] == "circle" and v["hole_share"] == 0 and not v["ring"]


def test_band_shares_tell_a_ring_from_a_disc_and_from_a_blank():
    ring = bench.band_shares(draw("red", "blue", 31.5, 31.5, 16, 6), "red", "blue")  # radius 10-16, hole inside
    disc = bench.band_shares(bench.disc_image("red", "blue"), "red", "blue")
    blank = bench.band_shares(Image.new("RGB", (64, 64), world.COLORS["blue"]), "red", "blue")
    assert ring["centre_background"] == 1 and ring["annulus_color"] > 0.8
    assert disc["centre_background"] == 0 and disc["annulus_color"] == 1
    assert blank["centre_background"] == 1 and blank["annulus_color"] == 0
    shifted = bench.band_shares(draw("red", "blue", 20, 31.5, 16, 6), "red", "blue")  # off centre: the band misses
    assert shifted["annulus_color"] < ring["annulus_color"] - 0.3


def test_each_start_gives_every_ring_prompt_its_own_options(tmp_path):
    prompts = bench.ring_prompts()
    plain = bench.start_items("prompt", tmp_path)
    assert [(q, c, b, s, o) for q, c, b, s, o in plain] == [(q, c, b, None, []) for q, c, b in prompts]
    steered = bench.start_items("circle", tmp_path)
    for (q, c, b), (sq, sc, sb, _, opts) in zip(prompts, steered):
        want = world.parse_caption(sq)
        assert (want.shape, want.color, want.background, sc, sb) == ("circle", c, b, c, b)
        assert opts[:2] == ["--steps", str(bench.CIRCLE_STEPS + bench.RING_STEPS)] and opts[2] == "--set"
        steer = OmegaConf.from_dotlist([opts[3]]).steer
        assert len(steer) == 1 and steer[0].at == bench.CIRCLE_STEPS and steer[0].prompt == q
        assert steer[0].lr == bench.RING_LR
    discs = bench.start_items("disc", tmp_path / "d")
    for (q, c, b), (dq, _, _, _, opts) in zip(prompts, discs):
        assert dq == q and opts[0] == "--init-image"
        assert np.array_equal(np.asarray(Image.open(opts[1])), np.asarray(bench.disc_image(c, b)))
    assert len({o[1] for *_, o in discs}) == 12


def test_generate_passes_each_items_own_options_after_the_common_ones(tmp_path, monkeypatch):
    calls = []

    def fake_call(argv):
        calls.append(argv)
        run = Path(argv[argv.index("--out") + 1])
        run.mkdir(parents=True)
        Image.fromarray(draw("red", "blue", 31.5, 31.5, 14, 5)).save(run / "final.png")
        return 0.5
    monkeypatch.setattr(bench, "call", fake_call)
    rows = bench.generate("M", [("p", "red", "blue", None, ["--own", "1"]), ("q", "red", "blue", None)], [3],
                          tmp_path, ["--common"])
    assert calls[0][-3:] == ["--common", "--own", "1"] and calls[1][-1] == "--common"
    assert calls[0][:2] == ["generate", "p"] and calls[0][calls[0].index("--seed") + 1] == "3"
    assert all(r["ring"] and r["centre_background"] == 1 for r in rows) and len(rows) == 2


def test_closure_negatives_are_unclosed_rings_captioned_as_fragments(tmp_path):
    bench.write_clip_data(tmp_path, rings=0, scenes=0, seed=0, negatives=12)
    pngs = sorted(tmp_path.glob("broken*.png"))
    assert len(pngs) == 12 and len(list(tmp_path.iterdir())) == 24
    for png in pngs:
        want = world.parse_caption(png.with_suffix(".txt").read_text())
        assert want.count == 0 and want.shape is None  # the world's "red fragments on a blue background"
        v = bench.ring_verdict(Image.open(png), want.color, want.background)
        assert v["color"] and v["background"] and not v["ring"]


def test_one_gap_negatives_are_single_open_rings_that_enclose_nothing(tmp_path):
    """--one-gap 1: every closure negative is one arc in one piece, a ring but for a single gap: not a ring."""
    bench.write_clip_data(tmp_path, rings=0, scenes=0, seed=0, negatives=10, one_gap=1.0)
    for png in sorted(tmp_path.glob("broken*.png")):
        want = world.parse_caption(png.with_suffix(".txt").read_text())
        v = bench.ring_verdict(Image.open(png), want.color, want.background)
        assert v["color"] and not v["ring"] and v["hole_share"] == 0.0
        mask = judge.classify_pixels(judge.to_array(Image.open(png))) == judge.COLOR_NAMES.index(want.color)
        assert len(judge.label_components(mask)[1]) == 1
    none = tmp_path / "none"  # without --one-gap the negatives are as before: some in several pieces
    bench.write_clip_data(none, rings=0, scenes=0, seed=0, negatives=10)
    pieces = [len(judge.label_components(judge.classify_pixels(judge.to_array(Image.open(q))) == judge.COLOR_NAMES
                                         .index(world.parse_caption(q.with_suffix(".txt").read_text()).color))[1])
              for q in sorted(none.glob("broken*.png"))]
    assert max(pieces) > 1


def test_the_image_start_aims_at_a_centred_ring_the_judge_accepts_and_a_gap_breaks_it(tmp_path):
    with bench.ring_width(5):
        full, gapped = bench.ring_image("red", "blue"), bench.ring_image("red", "blue", start=40, end=360)
        items = bench.start_items("image", tmp_path)
    assert bench.ring_verdict(full, "red", "blue")["ring"]
    v = bench.ring_verdict(gapped, "red", "blue")
    assert v["color"] and not v["ring"] and v["hole_share"] == 0.0
    bands = bench.band_shares(full, "red", "blue")
    assert bands["centre_background"] == 1.0 and bands["annulus_color"] >= 0.8
    with bench.ring_width(3):
        thin = bench.ring_image("red", "blue")
    red = lambda im: int((np.asarray(im) == world.COLORS["red"]).all(-1).sum())  # noqa: E731
    assert red(thin) < red(full)
    for (q, c, b), (iq, ic, ib, _, opts) in zip(bench.ring_prompts(), items):
        assert iq == f"{q}:0" and (ic, ib) == (c, b) and opts[0] == "--image-prompt"  # the text only names the start
        with bench.ring_width(5):
            assert np.array_equal(np.asarray(Image.open(opts[1])), np.asarray(bench.ring_image(c, b)))


def _pixels(images) -> torch.Tensor:
    """A pixel-space stand-in for a CLIP's image embedding: unit vectors [N, 64*64*3] of the centred pixel values."""
    x = torch.stack([torch.from_numpy(np.asarray(im, np.float32)).flatten() for im in images])
    return torch.nn.functional.normalize(x - 127.5, dim=-1)


def test_closure_figures_score_a_ring_against_its_gapped_self_and_a_disc(monkeypatch):
    """closure_figures against cosines computed here from the very images it embedded (a pixel-space 'CLIP' whose
    text embedding is the ring's own image, so the prompt prefers the ring in every pair)."""
    import vqclip.nets.clip as clip_module

    trios = []

    class PixelClip:
        def embed_images(self, images):
            trios.append(images)
            return _pixels(images)

        def encode_text(self, texts):
            return _pixels(trios[-1][:1])

    monkeypatch.setattr(clip_module, "load_clip", lambda model, pretrained: PixelClip())
    with bench.ring_width(5):
        f = bench.closure_figures("mini", pairs=3)
    assert f["pairs"] == 3 and len(trios) == 3
    for ring, gapped, disc in trios:
        fg, bg = _colours(ring)
        assert bench.ring_verdict(ring, fg, bg)["ring"] and not bench.ring_verdict(gapped, fg, bg)["ring"]
        assert _colours(gapped) == (fg, bg) and bench.ring_verdict(gapped, fg, bg)["color"]
        assert judge.judge(disc, f"a {fg} circle on a {bg} background").found_shape == "circle"
    cos = [(_pixels(t) @ _pixels(t).T)[0] for t in trios]
    assert f["cos_ring_gapped"] == pytest.approx(float(np.mean([float(c[1]) for c in cos])), abs=1e-4)
    assert f["cos_ring_disc"] == pytest.approx(float(np.mean([float(c[2]) for c in cos])), abs=1e-4)
    assert f["cos_ring_disc"] < f["cos_ring_gapped"] < 1 and f["prompt_prefers_ring"] == 1.0


def _colours(image) -> tuple[str, str]:
    """The two commonest named colours of a drawn image: (the shape's, the background's)."""
    counts = np.bincount(judge.classify_pixels(judge.to_array(image)).ravel(), minlength=len(judge.COLOR_NAMES))
    bg, fg = counts.argsort()[::-1][:2]
    return judge.COLOR_NAMES[fg], judge.COLOR_NAMES[bg]


def test_ring_width_widens_the_drawn_rings_inside_the_block_only():
    def colour_pixels(width: int | None = None) -> int:
        img, color, _ = bench.ring(np.random.default_rng(4), width)
        return int((img == np.array(world.COLORS[color], np.uint8)).all(-1).sum())

    thin = colour_pixels()
    with bench.ring_width(6):
        wide = colour_pixels()
    assert 1.6 < wide / thin < 2.2 and colour_pixels() == thin  # about twice the ink; restored after the block
    assert colour_pixels(6) == wide and colour_pixels(bench.RING_WIDTH) == thin  # train_vqgan.py's --ring-width


def test_train_vqgans_ring_width_reaches_every_ring_it_writes(tmp_path):
    """benchmarks/train_vqgan.py --ring-width: the training and held-out rings it writes are that wide."""
    ink = []
    for width in (3, 5):
        labels = bench.vq_bench.write_rings(tmp_path / str(width), 4, seed=2, width=width)
        ink.append([int((np.asarray(Image.open(q)) == np.array(world.COLORS[c], np.uint8)).all(-1).sum())
                    for q, (c, _) in zip(sorted((tmp_path / str(width)).glob("*.png")), labels)])
    assert all(1.3 < b / a < 2.0 for a, b in zip(*ink))  # the same rings (seed), wider lines


def _ring_guide():
    """benchmarks/ring_guide.py as a module."""
    spec = importlib.util.spec_from_file_location("ring_guide", _PATH.parent / "ring_guide.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_ring_guides_batches_are_rings_broken_rings_and_the_mini_mix():
    """benchmarks/ring_guide.py: label 3 is a ring (the ring judge says so), 4 the near misses (a broken ring is one)."""
    guide = _ring_guide()
    rng = np.random.default_rng(0)
    drawn = [guide.ring_sample(rng) for _ in range(200)]
    labels = np.bincount([label for _, label in drawn], minlength=5)
    assert labels.sum() == 200 and labels[3] == pytest.approx(200 * guide.RING_SHARE, abs=15) and labels[:3].min() > 10
    for img, label in drawn[:30]:
        cls = bench.judge.classify_pixels(img)
        border = np.bincount(cls[0], minlength=8).argmax()
        colours = [bench.judge.COLOR_NAMES[c] for c in np.unique(cls) if c != border]
        if label == 3:  # a drawn ring in one colour on another
            assert bench.ring_verdict(img, colours[0], bench.judge.COLOR_NAMES[border])["ring"]
        elif label < 3:  # the world's own scenes, labelled with their shape
            assert bench.judge.shape_kind(bench.judge.fill_holes(cls != border)) == ("circle", "square",
                                                                                      "triangle")[label]


def _pieces_and_holes(img: np.ndarray, color: str) -> tuple[int, int]:
    """The pieces of `color` in a drawn image (8-connected) and the holes they enclose (background regions cut off)."""
    mask = bench.judge.classify_pixels(img) == bench.judge.COLOR_NAMES.index(color)
    holes = bench.judge.fill_holes(mask) & ~mask
    return len(bench.judge.label_components(mask)[1]), len(bench.judge.label_components(holes)[1])


def test_the_ring_guides_hard_near_misses_are_rings_one_gap_short_tailed_rings_and_figure_eights():
    """--hard-misses: by topology, a gapped ring or arc is one piece with no hole, a tailed ring one piece with one
    hole, a figure eight one piece with two holes or more, scattered strokes several pieces and no hole; each kind in
    its share; and HARD_SHARE of the guide's batches are such near misses (label 4)."""
    guide = _ring_guide()
    rng = np.random.default_rng(1)
    with bench.ring_width(5):
        kinds = [_pieces_and_holes(img, c) for img, c, _ in (guide.hard_near_miss(rng) for _ in range(400))]
        drawn = [guide.ring_sample(rng, hard=True) for _ in range(400)]
    n = lambda sig: sum(k == sig for k in kinds) / len(kinds)  # noqa: E731
    assert n((1, 0)) > 0.4 + 0.05  # one gap short (0.4) and the broken rings' single arcs
    eights = sum(p == 1 and h >= 2 for p, h in kinds) / len(kinds)  # two loops (where they overlap, small holes more)
    assert n((1, 1)) == pytest.approx(0.15, abs=0.06) and eights == pytest.approx(0.15, abs=0.06)
    assert all(p >= 1 for p, _ in kinds) and all(h == 0 for p, h in kinds if p > 1)  # strokes enclose nothing
    labels = np.bincount([label for _, label in drawn], minlength=5)
    assert labels[4] >= 400 * guide.HARD_SHARE * 0.8 and labels[3] == pytest.approx(400 * guide.RING_SHARE, abs=25)


def test_train_vqgans_plus_signs_are_filled_pluses_the_mini_judge_calls_no_shape_it_knows(tmp_path):
    """benchmarks/train_vqgan.py --plus ARM: each image is one filled plus, its four corners background, its arms as
    wide as asked (the ring's alternative, a filled shape the mini world lacks)."""
    for arm in (0.2, 0.3):
        labels = bench.vq_bench.write_rings(tmp_path / str(arm), 6, seed=1, plus_arm=arm)
        for q, (c, b) in zip(sorted((tmp_path / str(arm)).glob("*.png")), labels):
            mask = (np.asarray(Image.open(q)) == np.array(world.COLORS[c], np.uint8)).all(-1)
            ys, xs = np.nonzero(mask)
            h, w = ys.max() - ys.min() + 1, xs.max() - xs.min() + 1
            assert abs(h - w) <= 1 and 24 <= h <= 41
            assert not mask[ys.min(), xs.min()] and not mask[ys.max(), xs.max()]  # corners empty: not a square
            assert mask[(ys.min() + ys.max()) // 2].sum() == w  # a full-width bar through the centre
            assert mask[:, (xs.min() + xs.max()) // 2].sum() == h  # and a full-height one
            bar = mask[ys.min()].sum()  # the top arm's width, against 2 x arm x half-extent
            assert abs(bar - 2 * arm * h / 2) <= 2
            assert bench.judge.shape_kind(mask) is None


def test_the_refinements_pool_prompts_are_the_ring_prompts_the_benchmark_does_not_judge():
    """benchmarks/ring_guide.py --rounds: the generator's near misses come from the 44 colour pairs that the 12 judged
    prompts leave, so that no judged image is ever trained on."""
    pool = _ring_guide().pool_prompts()
    judged = {(c, b) for _, c, b in bench.ring_prompts()}
    pairs = {(c, b) for _, c, b in pool}
    assert len(pool) == len(pairs) == 44 and not pairs & judged
    assert pairs | judged == {(c, b) for c in world.COLORS for b in world.COLORS if c != b}
    assert all(q == f"{world._a(c)} {c} ring on {world._a(b)} {b} background" for q, c, b in pool)


def test_a_refinement_teaches_the_guide_that_its_generators_images_are_near_misses(tmp_path, monkeypatch):
    """refine_guide: images the guide called anything but '_none' before are '_none' after, on runs it never saw;
    the refined guide is written beside its VQGAN and loads as generation loads it."""
    from tiny import write_vqgan

    from vqclip.mini.train.export import export_fp16
    from vqclip.nets.guide import Guide, GuideSpec, load_guide

    rg = _ring_guide()
    monkeypatch.setattr(rg, "BATCH", 16)
    monkeypatch.setattr(rg, "HELD_RUNS", 4)
    monkeypatch.setattr(rg, "HELD_IMAGES", 40)  # per-label accuracy needs every label, not 400 images
    monkeypatch.setattr(rg, "REFINE_LR", 5e-3)  # a tiny guide trained from scratch, for a few steps
    src = tmp_path / "guide"
    write_vqgan(src, fmt="safetensors")
    torch.manual_seed(0)
    spec = GuideSpec(labels=(*world.SHAPES, "ring", "_none"), widths=(8, 16), strides=(2, 2))
    export_fp16(Guide(spec).net, src, "guide.safetensors", "guide.json", spec.to_json())
    rng = np.random.default_rng(0)
    stripes = np.zeros((64, 64, 3), np.uint8)
    stripes[:, ::8] = world.COLORS["yellow"]  # what this 'generator' draws: thin yellow stripes on black
    runs = [[np.roll(stripes, int(rng.integers(8)), axis=1) for _ in range(2)] for _ in range(12)]
    figures = rg.refine_guide(src, runs, tmp_path / "refined", steps=40)
    before, after = figures["generator_called_none"]
    assert before < 0.5 and after == 1.0
    assert figures["runs"] == 12 and figures["images"] == 16  # 8 runs of 2 trained on, 4 held out
    assert set(figures["held_out_by_label"]) == set(spec.labels)
    guide = load_guide(tmp_path / "refined" / "guide.json", tmp_path / "refined" / "guide.safetensors")
    held = torch.from_numpy(np.stack([np.roll(stripes, 3, axis=1)])).permute(0, 3, 1, 2).float() / 255
    assert guide.labels[int(guide(held).argmax())] == "_none"
    assert (tmp_path / "refined" / "vqgan.yaml").is_file() and (tmp_path / "refined" / "vqgan.safetensors").is_file()
