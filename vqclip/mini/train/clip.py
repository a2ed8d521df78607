"""Train the mini CLIP from scratch on the mini world: symmetric contrastive loss, learned temperature, hard negatives."""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np
import open_clip
import torch
import torch.nn.functional as F
from open_clip.model import CLIP
from safetensors.torch import load_file
from torch import Tensor

from vqclip.errors import VqclipError
from vqclip.mini import world
from vqclip.mini.train.adversarial import GeneratorPool, reconstruct
from vqclip.mini.train.batches import normalize, to_tensor
from vqclip.mini.train.export import export_fp16
from vqclip.nets.device import native_bf16
from vqclip.nets.vqgan import load_vqgan
from vqclip.train.clip import _eta, features, lr_factor, param_groups

log = logging.getLogger("vqclip")

CLIP_CONFIG: dict = {
    "embed_dim": 128,
    "vision_cfg": {"image_size": 64, "patch_size": 8, "width": 128, "layers": 4, "head_width": 32, "mlp_ratio": 4.0},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 128, "heads": 4, "layers": 4},
}
# the held-out judge (`judge.json`): another architecture than the guiding CLIP (narrower, shallower, a 64-d
# embedding), trained apart with another seed, small enough to ship (the token table is most of its 1.8 MB)
JUDGE_CONFIG: dict = {
    "embed_dim": 64,
    "vision_cfg": {"image_size": 64, "patch_size": 8, "width": 64, "layers": 2, "head_width": 32, "mlp_ratio": 4.0},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 16, "heads": 2, "layers": 2},
}




def training_model(weights: Path | None = None, config: dict | None = None):
    """(open_clip CLIP of `config` (default `CLIP_CONFIG`) in fp32, trainable, from fp16 `weights` or fresh; its
    tokenizer)."""
    config = config or CLIP_CONFIG
    model = CLIP(**config)
    if weights is not None:
        model.load_state_dict({k: v.float() for k, v in load_file(str(weights)).items()})
    return model, open_clip.tokenizer.SimpleTokenizer(context_length=config["text_cfg"]["context_length"])


def no_decay(name: str, p: torch.nn.Parameter) -> bool:
    """The recipe's rule: no weight decay on the embeddings (token, position), gains, biases and the temperature."""
    return p.ndim < 2 or "embedding" in name


def optimizer(model: CLIP, lr: float, steps: int) -> tuple[torch.optim.AdamW, torch.optim.lr_scheduler.LambdaLR]:
    """The recipe's AdamW (decay 0.1 but as `no_decay` says) and its schedule: a warmup over the first 5% of the
    steps scaling a cosine from 1 to 0 over all of them (`vqclip.train.clip`'s param_groups and lr_factor)."""
    opt = torch.optim.AdamW(param_groups(model, 0.1, no_decay), lr=lr, betas=(0.9, 0.98), eps=1e-6)
    warm = max(1, steps // 20)
    return opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, warm, steps, overlap=True))


def augment(img: Tensor, gen: torch.Generator) -> Tensor:
    """Generation-like augmentation of [B,3,H,W] in [0,1]: random affine (border padding), blur, noise."""
    b = img.shape[0]
    u = lambda lo, hi: torch.rand(b, generator=gen) * (hi - lo) + lo  # noqa: E731
    ang = u(-0.26, 0.26)  # ±15°
    scale = u(0.85, 1.15)
    tx, ty = u(-0.15, 0.15), u(-0.15, 0.15)
    cos, sin = torch.cos(ang) / scale, torch.sin(ang) / scale
    theta = torch.stack([torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1)
    keep = torch.rand(b, generator=gen) < 0.2  # a fifth of the images are not warped
    theta[keep] = torch.tensor([[1.0, 0, 0], [0, 1.0, 0]])
    grid = F.affine_grid(theta, list(img.shape), align_corners=False)
    out = F.grid_sample(img, grid, mode="bilinear", padding_mode="border", align_corners=False)
    blur = torch.rand(b, generator=gen) < 0.3
    if blur.any():
        k = torch.tensor([0.25, 0.5, 0.25])
        k2 = (k[:, None] * k[None, :]).expand(3, 1, 3, 3)
        out[blur] = F.conv2d(F.pad(out[blur], (1, 1, 1, 1), mode="replicate"), k2, groups=3)
    out = out * u(0.9, 1.1)[:, None, None, None] + u(-0.05, 0.05)[:, None, None, None]
    out = out + torch.randn(out.shape, generator=gen) * u(0.0, 0.1)[:, None, None, None]
    return out.clamp(0, 1)


def consistent(img_attrs: list[world.Attributes], cap_attrs: list[world.Attributes]) -> Tensor:
    """[N,M] bool: caption j is true of image i (same colour, kind and count; an unsaid background matches any)."""
    ids: dict = {}  # colour, kind and background names (or None) -> small integers, shared by both sides

    def table(attrs: list[world.Attributes]) -> np.ndarray:
        rows = [[ids.setdefault(a.color, len(ids)), ids.setdefault(a.shape, len(ids)), a.count, a.clutter,
                 ids.setdefault(a.background, len(ids))] for a in attrs]
        return np.array(rows, dtype=np.int64).reshape(len(attrs), 5)

    img, cap = table(img_attrs)[:, None], table(cap_attrs)[None]
    same = (img[..., :4] == cap[..., :4]).all(-1)
    unsaid = np.array([c.background is None for c in cap_attrs], dtype=bool)[None]
    return torch.from_numpy(same & (unsaid | (img[..., 4] == cap[..., 4])))


def contrastive_loss(img_f: Tensor, txt_f: Tensor, logit_scale: Tensor, pos: Tensor, neg_f: Tensor | None = None
                     ) -> Tensor:
    """Symmetric CLIP loss over unit features [N,D] with soft targets spread over all true pairs `pos` [N,N]; extra
    image features `neg_f` [K,D] (true of no caption) join each caption's choice of images as negatives."""
    logits = logit_scale.exp().clamp(max=100) * img_f @ txt_f.t()
    t = pos.float()
    li = -(F.log_softmax(logits, 1) * (t / t.sum(1, keepdim=True))).sum(1).mean()
    by_text = logits.t()
    if neg_f is not None and len(neg_f):
        by_text = torch.cat([by_text, logit_scale.exp().clamp(max=100) * txt_f @ neg_f.t()], 1)
    lt = -(F.log_softmax(by_text, 1)[:, :len(t)] * (t.t() / t.t().sum(1, keepdim=True))).sum(1).mean()
    return (li + lt) / 2


def paired_loss(txt_f: Tensor, clean_f: Tensor, fake_f: Tensor, logit_scale: Tensor) -> Tensor:
    """Logistic ranking loss over unit features [K,D]: caption k must score its clean image above its fake one
    (the discriminator's side of a GAN, on CLIP's own scale)."""
    margin = (txt_f * clean_f).sum(1) - (txt_f * fake_f).sum(1)
    return F.softplus(-logit_scale.exp().clamp(max=100) * margin).mean()


def batch(rng: np.random.Generator, n: int, negatives: float, clutter: float = 0.0, blobs: float = 0.0
          ) -> tuple[Tensor, list[str], list[world.Attributes]]:
    """n fresh scenes: images [n,3,64,64] in [0,1], captions and the attributes the images show."""
    imgs = np.empty((n, 64, 64, 3), np.uint8)
    caps, attrs = [], []
    for i in range(n):
        sc = world.sample_any(rng, negatives, clutter, blobs=blobs)
        imgs[i] = world.render(sc)
        caps.append(world.caption(sc, rng))
        attrs.append(world.attributes(sc))
    return to_tensor(imgs), caps, attrs


def zero_shot(model, tokenizer, n: int = 600, seed: int = 12345, aug: bool = False) -> dict[str, float]:
    """Held-out zero-shot accuracy: argmax over all canonical captions; share right for colour, background, shape."""
    imgs, _, scenes = world.make_dataset(n, seed)
    x = to_tensor(imgs)
    if aug:
        x = augment(x, torch.Generator().manual_seed(seed))
    prompts = world.all_prompts()
    with torch.no_grad():
        t = F.normalize(model.encode_text(tokenizer(prompts)), dim=-1)
        f = torch.cat([F.normalize(model.encode_image(normalize(x[i:i + 200])), dim=-1)
                       for i in range(0, n, 200)])
    pred = [world.parse_caption(prompts[k]) for k in (f @ t.t()).argmax(1).tolist()]
    truth = [world.attributes(s) for s in scenes]
    acc = lambda key: float(np.mean([getattr(p, key) == getattr(a, key) for p, a in zip(pred, truth)]))  # noqa
    return {"color": acc("color"), "background": acc("background"), "shape": acc("shape"),
            "all": float(np.mean([p == a for p, a in zip(pred, truth)]))}


def prefers_clean(model, tokenizer, n: int = 200, seed: int = 999) -> float:
    """Share of held-out scenes whose canonical caption scores the clean scene above the same scene with clutter."""
    rng = np.random.default_rng(seed)
    clean, messy, prompts = [], [], []
    for _ in range(n):
        sc = world.sample_clutter(rng)
        clean.append(world.render(world.Scene(sc.background, sc.shapes[:1])))
        messy.append(world.render(sc))
        s = sc.shapes[0]
        prompts.append(f"a {s.color} {s.kind} on a {sc.background} background")
    with torch.no_grad():
        t = F.normalize(model.encode_text(tokenizer(prompts)), dim=-1)
        f = [F.normalize(model.encode_image(normalize(to_tensor(np.stack(x)))), dim=-1) for x in (clean, messy)]
    return float(((f[0] * t).sum(1) > (f[1] * t).sum(1)).float().mean())


def train_clip(out_dir: Path, seed: int = 0, steps: int = 900, batch_size: int = 128, lr: float = 1e-3,
               negatives: float = 0.3, finetune_steps: int = 300, clutter: float = 0.15, blobs: float = 0.25,
               adversarial_steps: int = 800, duel_steps: int = 150, stage: str = "all") -> dict:
    """Train from scratch (stage 1); fine-tune with clutter and irregular-blob negatives (stage 2); fine-tune against
    a pool of VQGAN+CLIP generations (stage 3, needs the mini VQGAN in out_dir; see `adversarial`); again with a
    stronger pool, 4 generation steps per training step, and a paired loss (stage 4, the "duel"). Each stage starts
    from the fp16 file the previous one wrote; writes clip.json + clip.safetensors (fp16); returns measured figures."""

    if stage in ("2", "3", "4") and not (out_dir / "clip.safetensors").is_file():
        raise VqclipError(f"CLIP stage {stage} starts from the CLIP in {out_dir}, which is not there; run stage "
                          f"{int(stage) - 1} first, or --stage all")
    if stage in ("all", "3", "4"):
        _load_vqgan(out_dir)  # checked before hours of training, not after
    figures = {}
    if stage in ("all", "1"):
        figures["stage1"] = _train(out_dir, seed, steps, batch_size, lr, negatives, 0.0, 0.0, None)
    if stage in ("all", "2") and finetune_steps > 0:
        figures["stage2"] = _train(out_dir, seed + 1, finetune_steps, batch_size, lr / 3, 0.2, clutter, blobs,
                                   out_dir / "clip.safetensors")
    if stage in ("all", "3") and adversarial_steps > 0:
        figures["stage3"] = _train(out_dir, seed + 2, adversarial_steps, batch_size, lr / 5, 0.2, 0.1, 0.15,
                                   out_dir / "clip.safetensors", adversarial=True, amp=native_bf16("cpu"))
    if stage in ("all", "4") and duel_steps > 0:
        figures["stage4"] = _train(out_dir, seed + 3, duel_steps, batch_size, lr / 5, 0.2, 0.1, 0.15,
                                   out_dir / "clip.safetensors", adversarial=True, gen_steps=4, pair_weight=1.0)
    return figures


def train_judge(out_dir: Path, seed: int = 1, steps: int = 3000, batch_size: int = 64, lr: float = 1e-3,
                finetune_steps: int = 1000) -> dict:
    """The held-out judge of the mini world: `JUDGE_CONFIG` trained apart from the guiding CLIP (another seed and
    architecture, never against generations, so it has not seen what the guide's runs exploit): stage 1 from scratch
    (and, with `finetune_steps`, the clutter and blob fine-tune); writes judge.json + judge.safetensors (fp16);
    returns measured figures."""
    figures = {"stage1": _train(out_dir, seed, steps, batch_size, lr, 0.3, 0.0, 0.0, None, config=JUDGE_CONFIG,
                                name="judge")}
    if finetune_steps > 0:
        figures["stage2"] = _train(out_dir, seed + 1, finetune_steps, batch_size, lr / 3, 0.2, 0.15, 0.25,
                                   out_dir / "judge.safetensors", config=JUDGE_CONFIG, name="judge")
    return figures


def _load_vqgan(out_dir: Path):
    """The mini VQGAN stages 3 and 4 generate with (the one in out_dir); a clear error when it is not there."""
    files = out_dir / "vqgan.yaml", out_dir / "vqgan.safetensors"
    if not all(f.is_file() for f in files):
        raise VqclipError(f"CLIP stages 3 and 4 generate with the mini VQGAN, which is not in {out_dir}; run "
                          f"`python -m vqclip.mini.train vqgan --out {out_dir}` first")
    return load_vqgan(*files)


def _train(out_dir: Path, seed: int, steps: int, batch_size: int, lr: float, negatives: float, clutter: float,
           blobs: float, init: Path | None, adversarial: bool = False, gen_steps: int = 1,
           pair_weight: float = 0.0, amp: torch.dtype | None = None, config: dict | None = None,
           name: str = "clip") -> dict:
    """One training stage, from scratch or from `init` weights; writes the weights and returns measured figures.

    With `adversarial`, each step also takes `gen_steps` generation steps on a `GeneratorPool`, adds a clean render of
    each pooled caption to the batch, shows a quarter of the scenes through the VQGAN (so decoder texture is no tell),
    and uses the pool's images as extra negatives. With `pair_weight`, the clean renders go through the VQGAN too and
    `paired_loss` asks each pooled caption to rank its clean render above the pool's image of it. `amp` is the
    autocast dtype the VQGAN runs in for the pool and the reconstructions (None: fp32, as generation on CPU).
    `config` is the architecture (default `CLIP_CONFIG`), written as NAME.json + NAME.safetensors."""

    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    config = config or CLIP_CONFIG
    model, tokenizer = training_model(init, config)
    vqgan = _load_vqgan(out_dir) if adversarial else None
    pool = GeneratorPool(vqgan, rng, amp=amp) if adversarial else None
    opt, sched = optimizer(model, lr, steps)
    t0 = time.time()
    model.train()
    for step in range(steps):
        x, caps, attrs = batch(rng, batch_size, negatives, clutter, blobs)
        neg, gen_dist = None, float("nan")
        if pool is not None:
            for _ in range(gen_steps):
                gen_dist = pool.step(model, tokenizer)
            neg, pooled = pool.negatives()
            more = [world.parse_caption(c) for c in pooled]
            # decoder texture must tell CLIP nothing: some scenes as the VQGAN shows them
            x[:batch_size // 4] = reconstruct(vqgan, x[:batch_size // 4], amp)
            clean = to_tensor(np.stack([world.render(world.scene_for(a, rng)) for a in more]))
            clean = reconstruct(vqgan, clean, amp) if pair_weight else clean
            x = torch.cat([x, clean])
            caps, attrs = caps + pooled, attrs + more
            neg = normalize(augment(neg, gen))
        x = normalize(augment(x, gen))
        pos = consistent(attrs, [world.parse_caption(c) for c in caps])
        img_f, txt_f = features(model, x, tokenizer(caps), amp=False)  # CLIP in fp32 (`amp` is the VQGAN's)
        neg_f = F.normalize(model.encode_image(neg), dim=-1) if neg is not None else None
        loss = contrastive_loss(img_f, txt_f, model.logit_scale, pos, neg_f)
        if pair_weight and neg_f is not None:
            twins = slice(len(img_f) - len(neg_f), len(img_f))  # the clean renders of the pooled captions
            loss = loss + pair_weight * paired_loss(txt_f[twins], img_f[twins], neg_f, model.logit_scale)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if step % 50 == 0 or step == steps - 1:
            spent = time.time() - t0
            log.info("clip step %d/%d loss %.4f scale %.1f%s  %.0fs  ETA %s", step + 1, steps, loss.item(),
                     model.logit_scale.exp().item(), f" pool distance {gen_dist:.3f}" if pool else "", spent,
                     _eta(spent / (step + 1) * (steps - step - 1)))
    model.eval()
    wall = time.time() - t0
    acc = zero_shot(model, tokenizer)
    export_fp16(model, out_dir, f"{name}.safetensors", f"{name}.json", json.dumps(config, indent=2) + "\n")
    n_params = sum(p.numel() for p in model.parameters())
    figures = {"wall_s": wall, "params": n_params, "steps": steps, "batch": batch_size, "seed": seed,
               "clutter": clutter, "blobs": blobs, "adversarial": adversarial, "gen_steps": gen_steps,
               "pair_weight": pair_weight, **acc,
               "prefers_clean": prefers_clean(model, tokenizer)}
    log.info("clip done: %s", figures)
    return figures
