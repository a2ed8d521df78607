"""Fine-tuning a taming VQGAN on a folder of images with taming's objective, written with taming's modules and no
pytorch_lightning: L1 + LPIPS (when its weights are on disk) + the quantizer's codebook/commitment loss, and after
`disc_start` taming's patch discriminator (hinge loss, adaptive weight); two Adam optimisers, bf16 autocast, seeded
random crops, a reconstruction grid and an atomic checkpoint every K steps, and a resume that ends on the same weights
as an uninterrupted run."""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import torch
from PIL import Image
from taming.modules.discriminator.model import NLayerDiscriminator, weights_init
from taming.modules.losses.vqperceptual import hinge_d_loss
from torch import Tensor, nn

from vqclip.errors import VqclipError
from vqclip.files.atomic import atomic_path, write_text
from vqclip.files.images import save_png
from vqclip.train import data as D
from vqclip.train import distributed as P
from vqclip.train.clip import _eta, load_checkpoint
from vqclip.train.perceptual import find_lpips
from vqclip.nets.vqgan import vqgan_spec
from vqclip.train.vqexport import check_source, export_vqgan, load_source, source_files

log = logging.getLogger("vqclip")

CONFIG_FILE, CHECKPOINT_FILE, METRICS_FILE, EXPORT_DIR, GRID_DIR = (D.OPTIONS_FILE, "checkpoint.pt", "metrics.json",
                                                                     "vqgan", "grids")
FREEZE = ("", "encoder", "codebook")
GRID_IMAGES = 4  # held-out images shown in each reconstruction grid
DISC_LAYERS = 3  # taming's NLayerDiscriminator default: the patch discriminator sees 32 px and more


@dataclass
class VqganTrainConfig:
    """What `vqclip train vqgan` was asked, recorded in RUN/train.json (a resume reads it back)."""

    data: str
    source: str  # --from: a preset (mini), or CONFIG.yaml+CHECKPOINT
    out: str
    steps: int = 1000
    batch: int = 4
    size: int = 256  # random crops of size x size pixels
    lr: float = 4.5e-6 * 4  # taming's base_learning_rate x batch
    disc_start: int = 500  # steps before the discriminator joins the objective
    disc_weight: float = 0.8
    disc_ndf: int = 64  # filters of the discriminator's first layer (taming's disc_ndf)
    codebook_weight: float = 1.0
    perceptual_weight: float = 1.0
    freeze: str = ""  # "encoder" or "codebook"
    val: float = 0.1
    seed: int = 0
    amp: bool = False  # bf16 autocast
    checkpoint_every: int = 100
    grid_every: int = 100
    log_every: int = 10
    device: str = "cpu"
    devices: str = ""  # several devices ("cpu,cpu", "cuda:0,cuda:1"): one process each, data-parallel

    def check(self) -> None:
        """One-line errors for values no training can use."""
        for name in ("steps", "batch", "disc_ndf", "checkpoint_every", "grid_every", "log_every"):
            if getattr(self, name) < 1:
                raise VqclipError(f"--{name.replace('_', '-')}: must be at least 1, got {getattr(self, name)}")
        procs = len(self.devices.split(",")) if self.devices else 1
        if self.batch % procs:
            raise VqclipError(f"--batch {self.batch} must split evenly into {procs} processes (one per device); give "
                              f"a multiple of {procs}")
        if self.freeze not in FREEZE:
            raise VqclipError(f"--freeze: one of encoder, codebook, got {self.freeze!r}")
        if not self.lr > 0 or self.disc_start < 0 or min(self.disc_weight, self.codebook_weight,
                                                          self.perceptual_weight) < 0:
            raise VqclipError("--lr must be above 0; --disc-start and the loss weights at least 0")
        if self.size < 2 ** (DISC_LAYERS + 2):
            raise VqclipError(f"--size {self.size}: the patch discriminator needs crops of at least "
                              f"{2 ** (DISC_LAYERS + 2)} px")


def check_size(size: int, factor: int) -> None:
    """The crop side must be a multiple of the VQGAN's downsampling factor."""
    if size % factor:
        lower, upper = size // factor * factor, (size // factor + 1) * factor
        raise VqclipError(f"--size {size}: this VQGAN downsamples by {factor}; give a multiple of {factor} (e.g. "
                          f"{lower or upper} or {upper})")


def crop_transform(size: int, train: bool) -> Callable[[Image.Image], Tensor]:
    """PIL RGB image -> [3,size,size] in [0,1]: the shorter side raised to `size` when under it (bicubic), then a
    random crop (torch's RNG, seeded per image by the caller) or the centre crop."""
    def tf(im: Image.Image) -> Tensor:
        w, h = im.size
        if min(w, h) < size:
            k = size / min(w, h)
            im = im.resize((max(size, round(w * k)), max(size, round(h * k))), Image.BICUBIC)
            w, h = im.size
        if train:
            x, y = int(torch.randint(0, w - size + 1, ())), int(torch.randint(0, h - size + 1, ()))
        else:
            x, y = (w - size) // 2, (h - size) // 2
        im = im.crop((x, y, x + size, y + size))
        return torch.from_numpy(np.asarray(im, dtype=np.float32) / 255.0).permute(2, 0, 1)
    return tf


def adaptive_weight(nll: Tensor, g_loss: Tensor, last_layer: Tensor, disc_weight: float,
                    group: P.Group = P.Group()) -> Tensor:
    """taming's adaptive weight of the generator's GAN term: |d nll / d W| / (|d g_loss / d W| + 1e-4), W the
    decoder's last layer, clamped to [0, 1e4], detached, times `disc_weight`; the gradients those of the global batch
    (averaged over the processes of `group`)."""
    nll_grads = P.average(torch.autograd.grad(nll, last_layer, retain_graph=True)[0], group)
    g_grads = P.average(torch.autograd.grad(g_loss, last_layer, retain_graph=True)[0], group)
    d_weight = torch.norm(nll_grads) / (torch.norm(g_grads) + 1e-4)
    return torch.clamp(d_weight, 0.0, 1e4).detach() * disc_weight


def trainable(model: nn.Module, freeze: str) -> list[nn.Parameter]:
    """The VQGAN's parameters the generator's optimiser trains, after freezing the encoder (with quant_conv) or the
    codebook."""
    model.requires_grad_(True)
    if freeze == "encoder":
        model.encoder.requires_grad_(False)
        model.quant_conv.requires_grad_(False)
    elif freeze == "codebook":
        model.quantize.requires_grad_(False)
    return [p for p in model.parameters() if p.requires_grad]


def reconstruct(model: nn.Module, x: Tensor, amp: bool = False) -> tuple[Tensor, Tensor]:
    """Images [B,3,S,S] in [0,1] -> (reconstruction [B,3,S,S] in [-1,1] as the decoder gives it, the quantizer's
    codebook + commitment loss), float32."""
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=amp):
        h = model.quant_conv(model.encoder(x * 2 - 1))
        z_q, qloss, _ = model.quantize(h.float())
        rec = model.decoder(model.post_quant_conv(z_q))
    return rec.float(), qloss.float()


def generator_loss(model: nn.Module, disc: nn.Module, lpips: Optional[nn.Module], x: Tensor, step: int,
                   cfg: VqganTrainConfig, group: P.Group = P.Group()) -> tuple[Tensor, Tensor, dict]:
    """taming's VQLPIPSWithDiscriminator generator objective for images x [B,3,S,S] in [0,1] (this process's share
    of the batch of `group`): (loss, the reconstruction [-1,1] detached, logged figures)."""
    rec, qloss = reconstruct(model, x, cfg.amp)
    inputs = x * 2 - 1
    rec_loss = (inputs - rec).abs()
    if lpips is not None and cfg.perceptual_weight > 0:
        rec_loss = rec_loss + cfg.perceptual_weight * lpips(inputs, rec)
    nll = rec_loss.mean()
    loss = nll + cfg.codebook_weight * qloss.mean()
    figures = {"nll": nll.item(), "q": qloss.item()}
    if step >= cfg.disc_start:
        g_loss = -disc(rec).mean()
        d_weight = adaptive_weight(nll, g_loss, model.decoder.conv_out.weight, cfg.disc_weight, group)
        loss = loss + d_weight * g_loss
        figures.update(g=g_loss.item(), d_weight=d_weight.item())
    return loss, rec.detach(), figures


def discriminator_loss(disc: nn.Module, x: Tensor, rec: Tensor) -> Tensor:
    """taming's discriminator objective: the hinge loss of real images x [B,3,S,S] in [0,1] (scaled to [-1,1])
    against the reconstructions rec [B,3,S,S] in [-1,1], both detached from the generator."""
    return hinge_d_loss(disc(x.detach() * 2 - 1), disc(rec.detach()))


def held_out_l1(model: nn.Module, images: Tensor, amp: bool = False) -> float:
    """Mean absolute error in [0,1] units of the quantised reconstructions of held-out images [N,3,S,S]."""
    with torch.no_grad():
        errs = [(reconstruct(model, images[i:i + 8], amp)[0].add(1).div(2).clamp(0, 1) - images[i:i + 8]).abs()
                .flatten(1).mean(1) for i in range(0, len(images), 8)]
    return float(torch.cat(errs).mean()) if errs else float("nan")


def save_grid(path: Path, images: Tensor, rec: Tensor) -> Path:
    """A PNG of the images [N,3,S,S] in [0,1] over their reconstructions, side by side, written atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    top, bottom = torch.cat(list(images), dim=2), torch.cat(list(rec.clamp(0, 1)), dim=2)
    return save_png(torch.cat([top, bottom], dim=1)[None], path)


def save_checkpoint(run: Path, step: int, model, disc, opt_g, opt_d) -> Path:
    """RUN/checkpoint.pt, atomically: both networks, both optimisers and the step done (crops are functions of the
    seed and the step)."""
    state = {"step": step, "model": model.state_dict(), "disc": disc.state_dict(), "opt_g": opt_g.state_dict(),
             "opt_d": opt_d.state_dict()}
    with atomic_path(run / CHECKPOINT_FILE) as tmp:
        torch.save(state, tmp)
    return run / CHECKPOINT_FILE


def read_config(run: Path) -> VqganTrainConfig:
    """The VqganTrainConfig recorded in RUN/train.json."""
    try:
        return VqganTrainConfig(**json.loads((Path(run) / CONFIG_FILE).read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError) as exc:
        raise VqclipError(f"--resume {run}: no readable {CONFIG_FILE} of a VQGAN training "
                          f"({exc.__class__.__name__}); give the folder of a `vqclip train vqgan` run") from None


def _val_images(pairs: Sequence[D.Pair], size: int) -> Tensor:
    """Held-out images as centre crops [N,3,S,S] (none: [0,3,S,S])."""
    return D.load_images(pairs, crop_transform(size, False)) if pairs else torch.zeros(0, 3, size, size)


def _check_fit(cfg: VqganTrainConfig, home_dir: Optional[Path]) -> None:
    """One-line errors for a --from that is no VQModel VQGAN and a --size its downsampling cannot take, read from
    its config."""
    ddconfig, _, _, gumbel, _ = vqgan_spec(source_files(cfg.source, home_dir)[0])
    if gumbel:
        load_source(cfg.source, torch.device("cpu"), home_dir)  # says why in one line
    check_size(cfg.size, 2 ** (len(ddconfig["ch_mult"]) - 1))


def train_vqgan(cfg: Optional[VqganTrainConfig] = None, resume: Optional[Path] = None,
                on_step: Optional[Callable[[int, float], None]] = None, home_dir: Optional[Path] = None
                ) -> Optional[dict]:
    """Fine-tune a VQGAN as `cfg` says in the run folder cfg.out (or continue the run `resume`); writes grids,
    checkpoints, RUN/metrics.json (held-out L1 before and after) and the exported preset folder RUN/vqgan; returns
    the metrics. `on_step(step, loss)` runs after each step (raising KeyboardInterrupt there stops as Ctrl-C does).
    With `cfg.devices` naming several devices, one process per device trains data-parallel; under torchrun, this
    process is one of them (None in all but the first, which alone logs)."""
    group = P.from_torchrun() or P.Group(device=cfg.device if cfg else "cpu")
    with P.quiet_unless_main(group):
        return _start(group, cfg, resume, on_step, home_dir)


def _start(group: P.Group, cfg: Optional[VqganTrainConfig], resume: Optional[Path],
           on_step: Optional[Callable[[int, float], None]], home_dir: Optional[Path]) -> Optional[dict]:
    """train_vqgan in this process of `group`: the run folder, then the training (here, joined, or spawned)."""
    # 1. The run folder, its data and its split
    if resume is not None:
        run = Path(resume)
        cfg = read_config(run)
        train_pairs, val_pairs = D.read_split(run)
        load_checkpoint(run)  # a missing or torn checkpoint is said now, before any process starts
    else:
        cfg.check()
        check_source(cfg.source, home_dir)  # a typo in --from is said before a large folder is read
        run = Path(cfg.out)
        D.check_fresh(run, CHECKPOINT_FILE)
        pairs = D.read_images(Path(cfg.data), min_side=D.MIN_SIDE)
        train_ids, val_ids = D.split(len(pairs), cfg.val, cfg.seed)
        if cfg.batch > len(train_ids):
            raise VqclipError(f"--batch {cfg.batch} is larger than the {len(train_ids)} training images; give --batch "
                              f"{len(train_ids)} or less, or more images")
        train_pairs, val_pairs = [pairs[i] for i in train_ids], [pairs[i] for i in val_ids]
    devices = P.parse_devices(cfg.devices) if cfg.devices else []
    if cfg.batch % group.size:
        raise VqclipError(f"--batch {cfg.batch} must split evenly into the {group.size} processes torchrun started")
    _check_fit(cfg, home_dir)  # no VQModel or a --size it cannot take: no folder left behind, no process started
    if resume is None and group.main:
        D.start_run(run, dataclasses.asdict(cfg), train_pairs, val_pairs, "images")
    return P.launch(_train, group, devices, run, run / METRICS_FILE, (cfg, run, train_pairs, val_pairs,
                                                                     resume is not None), on_step, home_dir)


def _train(group: P.Group, cfg: VqganTrainConfig, run: Path, train_pairs: list[D.Pair], val_pairs: list[D.Pair],
           resuming: bool, on_step: Optional[Callable[[int, float], None]], home_dir: Optional[Path]) -> Optional[dict]:
    """The training in one process of `group` (alone: the whole of it); the main process evaluates and writes."""
    device = torch.device(group.device if group.size > 1 else cfg.device)
    model, spec = load_source(cfg.source, device, home_dir)

    # 2. The networks, the perceptual term and the two optimisers (taming's: Adam, betas 0.5, 0.9)
    torch.manual_seed(cfg.seed)
    disc = NLayerDiscriminator(input_nc=3, n_layers=DISC_LAYERS, ndf=cfg.disc_ndf).apply(weights_init)
    disc = P.sync_batch_norms(disc.to(device).train(), group)  # its BatchNorm sees the global batch
    quiet = logging.Logger("vqclip.rank", logging.CRITICAL)  # the first process alone says what is missing
    lpips = find_lpips(home_dir, log if group.main else quiet) if cfg.perceptual_weight > 0 else None
    lpips = lpips.to(device) if lpips is not None else None
    model.train()
    opt_g = torch.optim.Adam(trainable(model, cfg.freeze), lr=cfg.lr, betas=(0.5, 0.9))
    opt_d = torch.optim.Adam(disc.parameters(), lr=cfg.lr, betas=(0.5, 0.9))
    val_x = _val_images(val_pairs, cfg.size).to(device) if group.main else torch.zeros(0, 3, cfg.size, cfg.size)
    metrics_path, start, before = run / METRICS_FILE, 0, None
    if not resuming:
        if group.main:
            before = held_out_l1(model, val_x, cfg.amp) if len(val_x) else None
            write_text(metrics_path, json.dumps({"before": {"l1": before}}, indent=1) + "\n")
    else:
        state = load_checkpoint(run)
        model.load_state_dict(state["model"])
        disc.load_state_dict(state["disc"])
        opt_g.load_state_dict(state["opt_g"])
        opt_d.load_state_dict(state["opt_d"])
        start = state["step"]
        before = json.loads(metrics_path.read_text())["before"]["l1"] if metrics_path.is_file() else None
        if group.main:
            log.info("resuming %s at step %d of %d", run, start, cfg.steps)

    # 3. The loop: a generator step, then (after disc_start) a discriminator step on the same reconstructions, each
    # process on its share of the batch, the gradients of both averaged over the processes
    train_tf = crop_transform(cfg.size, True)
    t0, done = time.time(), start
    try:
        for step in range(start, cfg.steps):
            batch = [train_pairs[i] for i in D.batch_indices(len(train_pairs), cfg.batch, cfg.seed, step)]
            seeds = group.part(D.image_seeds(cfg.seed, step, cfg.batch))
            x = D.load_images(group.part(batch), train_tf, seeds).to(device)
            loss, rec, figures = generator_loss(model, disc, lpips, x, step, cfg, group)
            opt_g.zero_grad(set_to_none=True)
            loss.backward()
            P.average_gradients(model, group)
            opt_g.step()
            if step >= cfg.disc_start:
                d_loss = discriminator_loss(disc, x, rec)
                opt_d.zero_grad(set_to_none=True)
                d_loss.backward()
                P.average_gradients(disc, group)
                opt_d.step()
                figures["disc"] = d_loss.item()
            done = step + 1
            if group.main and (done % cfg.checkpoint_every == 0 or done == cfg.steps):
                save_checkpoint(run, done, model, disc, opt_g, opt_d)
            if len(val_x) and (done % cfg.grid_every == 0 or done == cfg.steps):
                with torch.no_grad():
                    shown = val_x[:GRID_IMAGES]
                    save_grid(run / GRID_DIR / f"step_{done:06d}.png", shown,
                              reconstruct(model, shown, cfg.amp)[0].add(1).div(2))
            if group.main and (done % cfg.log_every == 0 or done == cfg.steps):
                rate = (done - start) * cfg.batch / max(time.time() - t0, 1e-9)
                log.info("step %d/%d loss %.4f %s  %.1f img/s  ETA %s", done, cfg.steps, loss.item(),
                         " ".join(f"{k} {v:.4f}" for k, v in figures.items()), rate,
                         _eta((cfg.steps - done) * cfg.batch / rate))
            if on_step is not None:
                on_step(done, loss.item())
    except KeyboardInterrupt:
        if not group.main:
            raise
        kept = (done // cfg.checkpoint_every) * cfg.checkpoint_every
        log.warning("interrupted after step %d; %s; continue with `vqclip train vqgan --resume %s`", done,
                    f"the checkpoint of step {kept} is kept" if kept else "no checkpoint was written yet", run)
        raise
    wall = time.time() - t0
    P.barrier(group)
    if not group.main:
        return None

    # 4. After: held-out L1, metrics.json and the exported preset
    model.eval()
    after = held_out_l1(model, val_x, cfg.amp) if len(val_x) else None
    metrics = {"before": {"l1": before}, "after": {"l1": after}, "steps": cfg.steps, "batch": cfg.batch,
               "size": cfg.size, "perceptual": lpips is not None, "processes": group.size,
               "images_per_s": (cfg.steps - start) * cfg.batch / max(wall, 1e-9)}
    write_text(metrics_path, json.dumps(metrics, indent=1) + "\n")
    export_vqgan(model, spec, run / EXPORT_DIR, cfg.source, home_dir)
    log.info("exported the VQGAN preset to %s (use it as --model %s)", run / EXPORT_DIR, run / EXPORT_DIR)
    return metrics
