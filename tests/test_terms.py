"""Loss terms as plug-ins (vqclip.terms): the registry loads each by name (an unknown one is a one-line error naming
the choices); a job builds only the terms it uses, summed in the registry's order after the CLIP terms; the math of
the palette, symmetry and tile terms against independent computations; each term in a step of the objective."""

import pytest
import torch

from vqclip.config import merge_layers
from vqclip.errors import VqclipError
from vqclip.optim.objective import Objective
from vqclip.terms.base import Term
from vqclip.terms.colors import rgb
from vqclip.terms.palette import image_palette, nearest, palette_loss, snap
from vqclip.terms.registry import TERMS, load
from vqclip.terms.symmetry import symmetry_loss
from vqclip.terms.tile import random_roll

CPU = torch.device("cpu")
PALETTE = torch.tensor([[1.0, 0, 0], [0, 0, 1.0], [0.2, 0.6, 0.4]])


def job(tiny_job, **over):
    return merge_layers([("tiny", tiny_job), ("t", {"prompt": "a red circle", "steps": 4, "seed": 1, **over})])


def test_every_registered_term_loads_as_the_term_of_its_name_and_an_unknown_name_lists_the_choices():
    assert list(TERMS) == ["init", "tv", "guide", "palette", "symmetry", "tile", "flow", "edit"]  # the order they are summed in
    for name in TERMS:
        cls = load(name)
        assert issubclass(cls, Term) and cls.name == name
    with pytest.raises(VqclipError, match="unknown loss term 'sparkle'; use one of init, tv, guide, palette"):
        load("sparkle")


def test_colours_are_read_as_pil_reads_them_and_a_non_colour_is_one_line_naming_the_key():
    assert rgb("red") == (255, 0, 0) and rgb(" #1a2b3c ") == (26, 43, 60) and rgb("#11223344") == (17, 34, 51)
    for bad in ("blurple", "", "#12345"):
        with pytest.raises(VqclipError, match=r"^palette.colors: .* is no colour; give a name") as err:
            rgb(bad)
        assert "\n" not in str(err.value)


def test_the_palette_distance_is_each_pixels_distance_to_its_nearest_colour():
    image = torch.rand(2, 3, 5, 4, generator=torch.Generator().manual_seed(0))
    pixels = image.permute(0, 2, 3, 1).reshape(-1, 3)
    dists = torch.stack([((pixels - c) ** 2).sum(1).sqrt() for c in PALETTE], 1)  # [N,K]
    index, d = nearest(image, PALETTE)
    assert torch.equal(index.reshape(-1), dists.argmin(1)) and torch.allclose(d.reshape(-1), dists.min(1).values)
    assert palette_loss(image, PALETTE).item() == pytest.approx(dists.min(1).values.mean().item(), rel=1e-6)
    on = PALETTE[torch.tensor([0, 2, 1, 1])].T.reshape(1, 3, 2, 2).clone().requires_grad_(True)
    loss = palette_loss(on, PALETTE)  # every pixel a palette colour: 0, with a finite gradient
    loss.backward()
    assert loss.item() == 0 and torch.isfinite(on.grad).all()


def test_snapping_gives_exactly_the_nearest_colours_and_passes_the_gradient_straight_through():
    image = torch.rand(1, 3, 6, 6, generator=torch.Generator().manual_seed(1)).requires_grad_(True)
    out = snap(image, PALETTE)
    index, _ = nearest(image, PALETTE)
    assert torch.equal(out.detach(), PALETTE[index].permute(0, 3, 1, 2))  # bit for bit the palette's colours
    g = torch.randn_like(image)
    (out * g).sum().backward()
    assert torch.equal(image.grad, g)


def test_an_images_palette_finds_its_colour_clusters():
    centres = torch.tensor([[0.9, 0.1, 0.1], [0.1, 0.2, 0.8], [0.2, 0.7, 0.3]])
    gen = torch.Generator().manual_seed(2)
    pixels = torch.cat([c + 0.02 * torch.randn(n, 3, generator=gen) for c, n in zip(centres, (500, 300, 200))])
    found = image_palette(pixels.clamp(0, 1), 3)
    assert found.shape == (3, 3)
    assert torch.cdist(centres, found).min(1).values.max() < 0.01  # each cluster's mean found
    assert image_palette(torch.tensor([[0.5, 0.5, 0.5]] * 10), 4).shape == (1, 3)  # one colour: one


def test_the_symmetry_term_is_the_mean_mirror_difference_per_axis():
    image = torch.rand(2, 3, 4, 6, generator=torch.Generator().manual_seed(3))
    x = (image - image[..., torch.arange(5, -1, -1)]).abs().mean()
    y = (image - image[..., torch.arange(3, -1, -1), :]).abs().mean()
    assert symmetry_loss(image, ["x"]).item() == pytest.approx(x.item())
    assert symmetry_loss(image, ["y"]).item() == pytest.approx(y.item())
    assert symmetry_loss(image, ["x", "y"]).item() == pytest.approx((x + y).item())
    mirrored = torch.cat([image[..., :3], image[..., :3].flip(-1)], -1)
    assert symmetry_loss(mirrored, ["x"]).item() == 0 and symmetry_loss(mirrored, ["y"]).item() > 0


def test_the_tiles_roll_is_drawn_from_the_given_stream_and_moves_every_start_alike():
    image = torch.rand(2, 3, 5, 7)
    shifts = set()
    for seed in range(12):
        rolled = random_roll(image, torch.Generator().manual_seed(seed))
        gen = torch.Generator().manual_seed(seed)
        dy, dx = int(torch.randint(5, (), generator=gen)), int(torch.randint(7, (), generator=gen))
        assert torch.equal(rolled, torch.roll(image, (dy, dx), (2, 3))), seed
        shifts.add((dy, dx))
    assert len(shifts) > 6 and {dy for dy, _ in shifts} != {0} and {dx for _, dx in shifts} != {0}  # both ways


def test_a_job_builds_only_its_terms_and_sums_them_after_clip_in_the_registrys_order(tiny_job, tiny_models):
    off = Objective(job(tiny_job), tiny_models, CPU)
    assert off.terms == [] and off.guide is None
    z = torch.randn(1, 8, 8, 8, generator=torch.Generator().manual_seed(5))
    z_init = z + 0.5
    cfg = job(tiny_job, tv_weight=0.3, init={"weight": 0.2}, palette={"colors": ["red", "blue"], "weight": 0.7},
              symmetry={"axes": ["y"], "weight": 0.4}, tile=True)
    objective = Objective(cfg, tiny_models, CPU)
    assert [t.name for t in objective.terms] == ["init", "tv", "palette", "symmetry", "tile"]
    image = objective.decode(z)
    parts = objective.losses(image, z, z_init, 0)
    assert list(parts) == ["clip:clip", "init", "tv", "palette", "symmetry"]  # the tile adds no loss of its own
    pal = torch.tensor([[1.0, 0, 0], [0, 0, 1.0]])
    wrapped = torch.cat([image, image[..., :1]], 3), torch.cat([image, image[..., :1, :]], 2)  # a tile: around
    tv = wrapped[0].diff(dim=3).pow(2).mean() + wrapped[1].diff(dim=2).pow(2).mean()  # neighbours across, then down
    expected = {"init": 0.2 * (z - z_init).pow(2).mean(), "tv": 0.3 * tv,
                "palette": 0.7 * palette_loss(image, pal), "symmetry": 0.4 * (image - image.flip(2)).abs().mean()}
    for name, value in expected.items():
        assert parts[name].item() == pytest.approx(value.item(), rel=1e-6), name
    for kind, over in (("palette.weight 0", {"palette": {"colors": ["red"], "weight": 0.0}}),
                       ("no palette colours", {"palette": {"weight": 3.0}}),
                       ("no symmetry axes", {"symmetry": {"weight": 3.0}}),
                       ("symmetry.weight 0", {"symmetry": {"axes": ["x"], "weight": 0.0}})):
        assert Objective(job(tiny_job, **over), tiny_models, CPU).terms == [], kind


def test_a_hard_palette_snaps_the_image_the_run_scores_and_adds_no_distance(tiny_job, tiny_models):
    cfg = job(tiny_job, palette={"colors": ["red", "#1a2b3c", "yellow"], "hard": True, "weight": 0.0})
    objective = Objective(cfg, tiny_models, CPU)
    z = torch.randn(1, 8, 8, 8, generator=torch.Generator().manual_seed(6)).requires_grad_(True)
    image = objective.decode(z)
    colours = torch.tensor([[255, 0, 0], [26, 43, 60], [255, 255, 0]]) / 255
    assert (image.detach().permute(0, 2, 3, 1)[..., None, :] == colours).all(-1).any(-1).all()
    parts = objective.losses(image, z, z, 0)
    assert list(parts) == ["clip:clip"]
    parts["clip:clip"].backward()
    assert z.grad.abs().sum() > 0  # the CLIP pulls through the snap


def test_a_tiled_job_decodes_circularly_and_rolls_the_cutouts_image(tiny_job, tiny_models):
    plain = Objective(job(tiny_job), tiny_models, CPU)
    tiled = Objective(job(tiny_job, tile=True), tiny_models, CPU)
    z = torch.randn(1, 8, 4, 4, generator=torch.Generator().manual_seed(7))
    f = tiny_models.vqgan.factor
    with torch.no_grad():
        err = (tiled.decode(z.roll(1, 3)) - tiled.decode(z).roll(f, 3)).abs().max()
        plain_err = (plain.decode(z.roll(1, 3)) - plain.decode(z).roll(f, 3)).abs().max()
    assert err < 1e-5 < plain_err
    assert all(m.padding_mode == "zeros" for m in tiny_models.vqgan.decoder.modules() if hasattr(m, "padding_mode"))
    image = torch.rand(1, 3, 32, 32)
    seen = []
    cut = tiled.cutouts[tiny_models.clips[0][0].image_size]
    apply = cut.apply
    cut.apply = lambda im, draw: seen.append(im) or apply(im, draw)
    torch.manual_seed(8)
    tiled.losses(image, z, z, 0)
    torch.manual_seed(8)
    assert torch.equal(seen[0], random_roll(image)) and not torch.equal(seen[0], image)


def test_the_guide_term_scores_in_the_runs_precision(tiny_job, tiny_models, tmp_path):
    from test_guide import write_guide  # a random guide in the published format
    from vqclip.nets.load import Models
    from vqclip.optim.guidance import GuideTerm

    guide = write_guide(tmp_path)[2]
    cfg = job(tiny_job, prompt="a red square", precision="bf16", guide={"model": "g", "weights": "w", "weight": 2.0})
    objective = Objective(cfg, Models(tiny_models.vqgan, tiny_models.clips, guide=guide), CPU)
    assert objective.amp == torch.bfloat16 and objective.guide.label == 1
    image = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(9))
    torch.manual_seed(3)
    values = [objective.losses(image, image, image, 0)["guide"].item() / 2.0]
    for amp in (torch.bfloat16, None):
        torch.manual_seed(3)  # the same cutouts drawn first, then the same augmented views
        objective.cutouts[tiny_models.clips[0][0].image_size].draw(1, 32, 32)
        term = GuideTerm(guide, cfg.guide.views)
        term.aim(["a red square"])
        values.append(term(image, amp).item())
    assert values[0] == pytest.approx(values[1], rel=1e-6) and values[1] != pytest.approx(values[2], rel=1e-6)
