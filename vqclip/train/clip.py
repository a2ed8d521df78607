"""Contrastive fine-tuning of an open_clip model on image-caption pairs, with open_clip's own `ClipLoss`, tokenizer
and transforms: a learnable temperature, AdamW with warmup + cosine, bf16 autocast, exact gradient accumulation,
locked towers (LiT), atomic checkpoints and a resume that ends on the same weights as an uninterrupted run."""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

import torch
import torch.nn.functional as F
from open_clip.loss import ClipLoss
from open_clip.transform import image_transform_v2
from torch import Tensor, nn

from vqclip.errors import VqclipError
from vqclip.files.atomic import atomic_path, write_text
from vqclip.train import data as D
from vqclip.train import distributed as P
from vqclip.train import generated as G
from vqclip.train.evaluate import evaluate
from vqclip.train.export import PRESET_NAME, export_clip, load_source, paired_preset, source_spec

log = logging.getLogger("vqclip")

CONFIG_FILE, CHECKPOINT_FILE, METRICS_FILE, EXPORT_DIR = D.OPTIONS_FILE, "checkpoint.pt", "metrics.json", "clip"
GENERATED_DIR = "generated"  # --generated: the pool's pictures under their real images at each checkpoint


@dataclass
class TrainConfig:
    """What `vqclip train clip` was asked, recorded in RUN/train.json (a resume reads it back)."""

    data: str
    source: str  # --from: a preset (mini), an open_clip MODEL[/TAG], or a CLIP folder / architecture JSON
    out: str
    steps: int = 100
    batch: int = 32  # pairs per optimiser step (the global batch)
    accum: int = 1  # micro-batches per step: features of the whole batch, gradients one micro-batch at a time
    lr: float = 1e-5
    wd: float = 0.2
    warmup: int = 10  # steps of linear warmup before the cosine decay
    val: float = 0.1  # held-out share
    seed: int = 0
    amp: bool = True  # bf16 autocast (CPU and CUDA)
    lock_image: bool = False
    lock_text: bool = False
    checkpoint_every: int = 50
    log_every: int = 10
    classes: list[str] = field(default_factory=list)
    templates: list[str] = field(default_factory=lambda: ["{}"])
    image_key: str = "filepath"
    caption_key: str = "caption"
    device: str = "cpu"
    devices: str = ""  # several devices ("cpu,cpu", "cuda:0,cuda:1"): one process each, data-parallel
    generated: int = 0  # latents in the pool of generator negatives (vqclip.train.generated); 0: none
    generated_weight: float = 1.0  # the ranking loss's weight beside the contrastive loss
    generated_life: int = 50  # generation steps before a pooled latent restarts on another caption

    def check(self) -> None:
        """One-line errors for values no training can use."""
        for name in ("steps", "accum", "checkpoint_every", "log_every"):
            if getattr(self, name) < 1:
                raise VqclipError(f"--{name.replace('_', '-')}: must be at least 1, got {getattr(self, name)}")
        procs = len(self.devices.split(",")) if self.devices else 1
        if self.batch % (self.accum * procs):
            raise VqclipError(f"--batch {self.batch} must split evenly into {procs} process(es) x --accum {self.accum} "
                              "micro-batches")
        if not self.lr > 0 or self.wd < 0 or self.warmup < 0:
            raise VqclipError("--lr must be above 0, --wd and --warmup at least 0")
        if self.generated < 0 or self.generated_life < 1 or not self.generated_weight > 0:
            raise VqclipError("--generated must be at least 0, --generated-life at least 1, --generated-weight above 0")
        if self.generated and procs > 1:
            raise VqclipError("--generated trains on one device; leave out --devices (or --generated)")
        if self.lock_image and self.lock_text:
            raise VqclipError("--lock-image and --lock-text together leave nothing to train; give one of them")
        bad = [t for t in self.templates if t.count("{}") != 1]
        if bad:
            raise VqclipError(f"--templates: each needs one '{{}}' for the class, got {bad[0]!r}")


def open_clip_no_decay(name: str, p: nn.Parameter) -> bool:
    """open_clip's training rule: no weight decay on gains, norms, biases and the temperature (tensors under 2-D)."""
    return p.ndim < 2 or "bn" in name or "ln" in name or "bias" in name or "logit_scale" in name


def param_groups(model: nn.Module, wd: float, no_decay: Callable[[str, nn.Parameter], bool] = open_clip_no_decay
                 ) -> list[dict]:
    """AdamW groups [no decay, decay `wd`] of the trainable parameters (frozen ones left out); `no_decay(name,
    param)` picks those spared (default open_clip's rule, which decays the embeddings)."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    return [{"params": [p for n, p in named if no_decay(n, p)], "weight_decay": 0.0},
            {"params": [p for n, p in named if not no_decay(n, p)], "weight_decay": wd}]


def lr_factor(step: int, warmup: int, steps: int, floor: float = 0.0, overlap: bool = False) -> float:
    """The share of the base learning rate at `step` (from 0): a linear warmup to 1 over `warmup` steps, then a
    cosine to `floor` at `steps` (open_clip's cosine_lr with floor 0). With `overlap` the cosine runs over every step
    from 0 and the warmup scales its start (the mini recipe's shape)."""
    ramp = min(1.0, (step + 1) / warmup) if warmup else 1.0
    if overlap:  # the cosine from step 0, in the mini recipe's arithmetic (its weights reproduce to the bit)
        angle = math.pi * min(1.0, step / steps)
    else:  # the cosine from the warmup's end, in open_clip's arithmetic
        angle = math.pi * max(0, step - warmup) / max(1, steps - warmup)
    return ramp * (floor + (1 - floor) * 0.5 * (1 + math.cos(angle)))


def features(model: nn.Module, images: Tensor, tokens: Tensor, amp: bool) -> tuple[Tensor, Tensor]:
    """Unit (image, text) features [B,D] in float32, the towers run under bf16 autocast when `amp`."""
    with torch.autocast(images.device.type, dtype=torch.bfloat16, enabled=amp):
        img, txt = model.encode_image(images), model.encode_text(tokens)
    return F.normalize(img.float(), dim=-1), F.normalize(txt.float(), dim=-1)


def contrastive_step(model: nn.Module, loss_fn: ClipLoss, images: Tensor, tokens: Tensor, accum: int = 1,
                     amp: bool = False) -> Tensor:
    """Forward and backward of one step's batch (images [B,3,S,S], tokens [B,L]); returns the loss (detached).

    With `accum` > 1 the gradient is the whole batch's, as open_clip's accum_freq computes it: features of every
    micro-batch first without grad, then each micro-batch again with grad in place of its cached part, the loss over
    the whole batch backpropagated each time (the temperature's share taken once)."""
    scale = model.logit_scale.exp()
    if accum == 1:
        img, txt = features(model, images, tokens, amp)
        loss = loss_fn(img, txt, scale)
        loss.backward()
        return loss.detach()
    chunks = list(zip(images.chunk(accum), tokens.chunk(accum)))
    with torch.no_grad():
        cached = [features(model, x, t, amp) for x, t in chunks]
    for j, (x, t) in enumerate(chunks):
        img, txt = features(model, x, t, amp)
        all_img = torch.cat([c[0] for c in cached[:j]] + [img] + [c[0] for c in cached[j + 1:]])
        all_txt = torch.cat([c[1] for c in cached[:j]] + [txt] + [c[1] for c in cached[j + 1:]])
        loss = loss_fn(all_img, all_txt, scale if j == 0 else scale.detach())
        loss.backward()
    return loss.detach()


def ranking_step(pool: G.GeneratedPool, model: nn.Module, tokenizer, step: int, weight: float, amp: bool
                 ) -> tuple[float, float]:
    """Training step `step`'s share of the generator negatives: one generation step of the pool, then `weight` x
    `G.ranking_loss` of the pooled captions backpropagated into `model` (the towers as `features` runs them, the
    temperature taken as it is). Returns (the pool's mean distance to its captions, the ranking loss)."""
    distance = pool.step(step)
    fake, index = pool.negatives()
    if not len(index):
        return distance, 0.0
    real = pool.real(index)
    images = (torch.cat([real, fake.to(real.device)]) - pool.clip.mean) / pool.clip.std
    tokens = tokenizer([pool.pairs[i].caption for i in index.tolist()]).to(real.device)
    img, txt = features(model, images, tokens, amp)
    real_f, fake_f = img.chunk(2)
    loss = weight * G.ranking_loss(txt, real_f, fake_f, model.logit_scale.exp().detach())
    loss.backward()
    return distance, float(loss.detach())


def save_checkpoint(run: Path, step: int, model: nn.Module, opt, sched, pool: Optional[dict] = None) -> Path:
    """RUN/checkpoint.pt, atomically: weights, optimiser, schedule, the step done and the pool of generator negatives
    if any (the data order and the augmentations are functions of the seed and the step: nothing else to keep)."""
    state = {"step": step, "model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict()}
    if pool is not None:
        state["pool"] = pool
    with atomic_path(run / CHECKPOINT_FILE) as tmp:
        torch.save(state, tmp)
    return run / CHECKPOINT_FILE


def load_checkpoint(run: Path) -> dict:
    """The state of RUN/checkpoint.pt, read without running code."""
    try:
        return torch.load(run / CHECKPOINT_FILE, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise VqclipError(f"{run}: no {CHECKPOINT_FILE}; it stopped before its first checkpoint, start it "
                          "again") from None
    except Exception as exc:  # a torn or foreign file: pickle and zip errors of many kinds
        raise VqclipError(f"{run / CHECKPOINT_FILE}: not a readable checkpoint ({exc.__class__.__name__})") from None


def read_config(run: Path) -> TrainConfig:
    """The TrainConfig recorded in RUN/train.json."""
    try:
        raw = json.loads((Path(run) / CONFIG_FILE).read_text(encoding="utf-8"))
        return TrainConfig(**raw)
    except (OSError, ValueError, TypeError) as exc:
        raise VqclipError(f"--resume {run}: no readable {CONFIG_FILE} ({exc.__class__.__name__}); give the folder of "
                          "a training run") from None


def _eta(seconds: float) -> str:
    """A duration as 1h02m, 3m05s or 12s."""
    s = int(round(seconds))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


def train_clip(cfg: Optional[TrainConfig] = None, resume: Optional[Path] = None,
               on_step: Optional[Callable[[int, float], None]] = None) -> Optional[dict]:
    """Fine-tune a CLIP as `cfg` says, in the run folder cfg.out (or continue the run `resume`); evaluates before and
    after, writes RUN/metrics.json and the exported CLIP in RUN/clip; returns the metrics. `on_step(step, loss)` is
    called after each step (a progress hook; raising KeyboardInterrupt there stops as Ctrl-C does). With
    `cfg.devices` naming several devices, one process per device trains data-parallel; under torchrun, this process
    is one of them (None in all but the first, which alone logs)."""
    group = P.from_torchrun() or P.Group(device=cfg.device if cfg else "cpu")
    with P.quiet_unless_main(group):
        return _start(group, cfg, resume, on_step)


def _start(group: P.Group, cfg: Optional[TrainConfig], resume: Optional[Path],
           on_step: Optional[Callable[[int, float], None]]) -> Optional[dict]:
    """train_clip in this process of `group`: the run folder, then the training (here, joined, or spawned)."""
    # 1. The run folder, its data and its split
    if resume is not None:
        run = Path(resume)
        cfg = read_config(run)
        train_pairs, val_pairs = D.read_split(run)
        load_checkpoint(run)  # a missing or torn checkpoint is said now, before any process starts
    else:
        cfg.check()
        source_spec(cfg.source)  # a bad --from is said before a large folder is read, and leaves no folder behind
        run = Path(cfg.out)
        D.check_fresh(run, CHECKPOINT_FILE)
        pairs = D.read_pairs(Path(cfg.data), cfg.image_key, cfg.caption_key)
        train_ids, val_ids = D.split(len(pairs), cfg.val, cfg.seed)
        D.check_batch(cfg.batch, len(train_ids))
        train_pairs, val_pairs = [pairs[i] for i in train_ids], [pairs[i] for i in val_ids]
        if cfg.generated:
            G.pool_vqgan(cfg.source)  # so does a --from without a VQGAN to draw the pool
    devices = P.parse_devices(cfg.devices) if cfg.devices else []
    if cfg.generated and group.size > 1:
        raise VqclipError("--generated trains on one device; run it without torchrun (or without --generated)")
    if cfg.batch % (cfg.accum * group.size):  # torchrun's processes (--devices is checked with the other values)
        raise VqclipError(f"--batch {cfg.batch} must split evenly into the {group.size} processes torchrun started "
                          f"x --accum {cfg.accum} micro-batches")
    if resume is None and group.main:
        D.start_run(run, dataclasses.asdict(cfg), train_pairs, val_pairs, "pairs")
    return P.launch(_train, group, devices, run, run / METRICS_FILE, (cfg, run, train_pairs, val_pairs,
                                                                     resume is not None), on_step)


def _train(group: P.Group, cfg: TrainConfig, run: Path, train_pairs: list[D.Pair], val_pairs: list[D.Pair],
           resuming: bool, on_step: Optional[Callable[[int, float], None]]) -> Optional[dict]:
    """The training in one process of `group` (alone: the whole of it); the main process evaluates and writes."""
    # 2. The model, its transforms, the loss, the optimiser and the schedule
    device = torch.device(group.device if group.size > 1 else cfg.device)
    clip, model_cfg = load_source(cfg.source, device)
    model, tokenizer = clip.model.requires_grad_(True).train(), clip.tokenizer
    if cfg.lock_image:
        model.lock_image_tower()
    if cfg.lock_text:
        model.lock_text_tower()
    train_tf = image_transform_v2(clip.preprocess_cfg, is_train=True)
    eval_tf = clip.transform
    loss_fn = ClipLoss(gather_with_grad=True, rank=group.rank, world_size=group.size)
    opt = torch.optim.AdamW(param_groups(model, cfg.wd), lr=cfg.lr, betas=(0.9, 0.98), eps=1e-6)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, cfg.warmup, cfg.steps))
    pool = G.GeneratedPool(G.pool_vqgan(cfg.source, device), clip, train_pairs, cfg.generated, cfg.seed,
                           cfg.generated_life, amp=torch.bfloat16 if cfg.amp and device.type == "cuda" else None
                           ) if cfg.generated else None
    metrics_path = run / METRICS_FILE
    before, start = None, 0
    if not resuming:
        if group.main:
            before = _evaluate(model, tokenizer, eval_tf, val_pairs, device, cfg, "before")
            write_text(metrics_path, json.dumps({"before": before}, indent=1) + "\n")
    else:
        state = load_checkpoint(run)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        if pool is not None:
            pool.load_state_dict(state["pool"])
        start = state["step"]
        before = json.loads(metrics_path.read_text()).get("before") if metrics_path.is_file() else None
        log.info("resuming %s at step %d of %d", run, start, cfg.steps)

    # 3. The loop: one batch per step in each epoch's seeded order (this process's share), a checkpoint every K steps
    t0, done = time.time(), start
    try:
        for step in range(start, cfg.steps):
            batch = [train_pairs[i] for i in D.batch_indices(len(train_pairs), cfg.batch, cfg.seed, step)]
            seeds = group.part(D.image_seeds(cfg.seed, step, cfg.batch))
            batch = group.part(batch)
            images = D.load_images(batch, train_tf, seeds).to(device)
            tokens = tokenizer([p.caption for p in batch]).to(device)
            opt.zero_grad(set_to_none=True)
            loss = contrastive_step(model, loss_fn, images, tokens, cfg.accum, cfg.amp)
            ranked = ranking_step(pool, model, tokenizer, step, cfg.generated_weight, cfg.amp) if pool else None
            P.average_gradients(model, group)
            opt.step()
            sched.step()
            with torch.no_grad():
                model.logit_scale.clamp_(0, math.log(100))  # open_clip's bound on the temperature
            done = step + 1
            if group.main and (done % cfg.checkpoint_every == 0 or done == cfg.steps):
                save_checkpoint(run, done, model, opt, sched, pool.state_dict() if pool else None)
                if pool is not None:
                    pool.save_grid(run / GENERATED_DIR / f"step_{done:06d}.png")
            if group.main and (done % cfg.log_every == 0 or done == cfg.steps):
                rate = (done - start) * cfg.batch / max(time.time() - t0, 1e-9)
                log.info("step %d/%d loss %.4f%s lr %.2e scale %.1f  %.1f img/s  ETA %s", done, cfg.steps, loss.item(),
                         "" if ranked is None else f" (generated: distance {ranked[0]:.3f}, ranking {ranked[1]:.3f})",
                         sched.get_last_lr()[0], model.logit_scale.exp().item(), rate,
                         _eta((cfg.steps - done) * cfg.batch / rate))
            if on_step is not None:
                on_step(done, loss.item())
    except KeyboardInterrupt:
        kept = (done // cfg.checkpoint_every) * cfg.checkpoint_every
        log.warning("interrupted after step %d; %s; continue with `vqclip train clip --resume %s`", done,
                    f"the checkpoint of step {kept} is kept" if kept else "no checkpoint was written yet", run)
        raise
    wall = time.time() - t0
    P.barrier(group)
    if not group.main:
        return None

    # 4. After: evaluation, metrics.json and the exported CLIP
    after = _evaluate(model, tokenizer, eval_tf, val_pairs, device, cfg, "after")
    metrics = {"before": before, "after": after, "steps": cfg.steps, "batch": cfg.batch, "processes": group.size,
               "images_per_s": (cfg.steps - start) * cfg.batch / max(wall, 1e-9)}
    write_text(metrics_path, json.dumps(metrics, indent=1) + "\n")
    pair = paired_preset(cfg.source)
    export_clip(model, model_cfg, clip.preprocess_cfg, run / EXPORT_DIR, cfg.templates, pair=pair,
                words=[p.caption for p in train_pairs])
    if pair.base is not None:
        log.info("exported the CLIP to %s with the VQGAN of %s: a preset folder (use it as --model %s)",
                 run / EXPORT_DIR, pair.base, run / EXPORT_DIR)
    else:
        log.info("exported the CLIP to %s (use it as --clip-model %s, or its preset through VQCLIP_PRESETS=%s)",
                 run / EXPORT_DIR, run / EXPORT_DIR, run / EXPORT_DIR / PRESET_NAME)
    return metrics


def _evaluate(model, tokenizer, transform, val_pairs: Sequence[D.Pair], device, cfg: TrainConfig, when: str):
    """The held-out figures (None without held-out pairs), said in the log."""
    if not val_pairs:
        return None
    out = evaluate(model, tokenizer, transform, val_pairs, device, cfg.classes or None, cfg.templates)
    zs = out.get("zero_shot")
    log.info("%s: recall@1 image->text %.3f text->image %.3f, recall@5 %.3f / %.3f%s", when,
             out["image_to_text_r1"], out["text_to_image_r1"], out["image_to_text_r5"], out["text_to_image_r5"],
             f", zero-shot accuracy {zs['accuracy']:.3f} on {zs['images']} images" if zs else "")
    return out
