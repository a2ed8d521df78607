"""The classic VQGAN+CLIP loop as the public notebooks and scripts run it, for measuring vqclip against (the speed
benchmark `benchmarks/textbook_loop.py`, the GPU check, the tests' reference step): part of the package, so the GPU
check runs from an installed vqclip, not only from a source checkout.

Written from the structure of Katherine Crowson's notebook as nerdyrodent/VQGAN-CLIP's generate.py runs it:
frozen models, cutouts cropped one by one in a Python loop and resized with adaptive average pooling, Kornia
augments on the batch plus per-cutout noise, CLIP on the batch, spherical-distance prompt loss, Adam on z,
straight-through vector quantization, clamp-with-gradient, fp32 everywhere, no checkpointing, no compile.
The models are built straight from taming modules and open_clip (not through vqclip's own modules), and the augments
match vqclip's defaults so both do the same work per step.
"""

from __future__ import annotations

import contextlib
import io

import torch
import torch.nn.functional as F
from torch import nn

from .bench import AUGMENTS, BENCH_PROMPT, VQGAN_ARCHS


class TextbookVQGAN(nn.Module):
    """The parts of taming's VQModel the loop uses: encoder (loaded, as the scripts do), codebook, decoder."""

    def __init__(self, ddconfig: dict, n_embed: int, embed_dim: int):
        super().__init__()
        from taming.modules.diffusionmodules.model import Decoder, Encoder  # taming: only when a loop is built

        self.encoder = Encoder(**ddconfig)
        with contextlib.redirect_stdout(io.StringIO()):
            self.decoder = Decoder(**ddconfig)
        self.quant_conv = nn.Conv2d(ddconfig["z_channels"], embed_dim, 1)
        self.post_quant_conv = nn.Conv2d(embed_dim, ddconfig["z_channels"], 1)
        self.embedding = nn.Embedding(n_embed, embed_dim)
        self.embedding.weight.data.uniform_(-1.0 / n_embed, 1.0 / n_embed)

    def decode(self, z_q):
        return self.decoder(self.post_quant_conv(z_q))


class ReplaceGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x_forward, x_backward):
        ctx.shape = x_backward.shape
        return x_forward

    @staticmethod
    def backward(ctx, grad_in):
        return None, grad_in.sum_to_size(ctx.shape)


class ClampWithGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, input, min, max):
        ctx.min, ctx.max = min, max
        ctx.save_for_backward(input)
        return input.clamp(min, max)

    @staticmethod
    def backward(ctx, grad_in):
        (input,) = ctx.saved_tensors
        return grad_in * (grad_in * (input - input.clamp(ctx.min, ctx.max)) >= 0), None, None


replace_grad, clamp_with_grad = ReplaceGrad.apply, ClampWithGrad.apply


def vector_quantize(x, codebook):
    d = x.pow(2).sum(dim=-1, keepdim=True) + codebook.pow(2).sum(dim=1) - 2 * x @ codebook.T
    indices = d.argmin(-1)
    x_q = F.one_hot(indices, codebook.shape[0]).to(d.dtype) @ codebook
    return replace_grad(x_q, x)


class Prompt(nn.Module):
    def __init__(self, embed, weight=1.0, stop=float("-inf")):
        super().__init__()
        self.register_buffer("embed", embed)
        self.register_buffer("weight", torch.as_tensor(weight))
        self.register_buffer("stop", torch.as_tensor(stop))

    def forward(self, input):
        input_normed = F.normalize(input.unsqueeze(1), dim=2)
        embed_normed = F.normalize(self.embed.unsqueeze(0), dim=2)
        dists = input_normed.sub(embed_normed).norm(dim=2).div(2).arcsin().pow(2).mul(2)
        dists = dists * self.weight.sign()
        return self.weight.abs() * replace_grad(dists, torch.maximum(dists, self.stop)).mean()


class MakeCutouts(nn.Module):
    """Per-cutout crop + adaptive average pool in a Python loop, then Kornia augments and noise on the batch."""

    def __init__(self, cut_size, cutn, cut_pow=1.0, noise_fac=0.1):
        super().__init__()
        import kornia.augmentation as K  # kornia: only when a loop is built

        self.cut_size, self.cutn, self.cut_pow, self.noise_fac = cut_size, cutn, cut_pow, noise_fac
        table = {"affine": K.RandomAffine(degrees=15, translate=0.1, p=0.7, padding_mode="border"),
                 "perspective": K.RandomPerspective(0.2, p=0.7)}
        self.augs = nn.Sequential(*[table[a] for a in AUGMENTS if a in table])
        self.av_pool = nn.AdaptiveAvgPool2d((cut_size, cut_size))

    def forward(self, input, fixed=None):
        """`fixed` = (boxes [cutn,4] as x0, y0, x1, y1; Kornia's parameters, one per augment; noise [cutn,3,S,S])
        replays given views instead of drawing them (the tests compare a vqclip step with this one that way)."""
        side_y, side_x = input.shape[2:4]
        max_size = min(side_x, side_y)
        min_size = min(side_x, side_y, self.cut_size)
        cutouts = []
        if fixed is not None:
            boxes, aug_params, noise = fixed
            for x0, y0, x1, y1 in boxes.long().tolist():
                cutouts.append(self.av_pool(input[:, :, y0:y1, x0:x1]))
            batch = torch.cat(cutouts, dim=0)
            for aug, params in zip(self.augs, aug_params):
                batch = aug(batch, params=params)
            return batch + noise.to(batch)
        for _ in range(self.cutn):
            size = int(torch.rand([]) ** self.cut_pow * (max_size - min_size) + min_size)
            offsetx = torch.randint(0, side_x - size + 1, ())
            offsety = torch.randint(0, side_y - size + 1, ())
            cutout = input[:, :, offsety:offsety + size, offsetx:offsetx + size]
            cutouts.append(self.av_pool(cutout))
        batch = self.augs(torch.cat(cutouts, dim=0))
        if self.noise_fac:
            facs = batch.new_empty([self.cutn, 1, 1, 1]).uniform_(0, self.noise_fac)
            batch = batch + facs * torch.randn_like(batch)
        return batch


def build(vqgan_name: str, clip_name: str, device: torch.device, seed: int = 0):
    """Random-weight models of the named architectures, frozen as the scripts freeze them."""
    import open_clip  # only when the loop's models are built

    dd, n_embed, embed_dim, gumbel = VQGAN_ARCHS[vqgan_name]
    if gumbel:
        raise SystemExit("the textbook loop covers VQModel architectures only")
    torch.manual_seed(seed)
    model = TextbookVQGAN(dict(dd), n_embed, embed_dim).to(device).eval().requires_grad_(False)
    torch.manual_seed(seed)
    perceptor = open_clip.create_model(clip_name, pretrained=None).to(device).eval().requires_grad_(False)
    tokenizer = open_clip.get_tokenizer(clip_name)
    return model, perceptor, tokenizer


def textbook_loss(model, perceptor, z, prompts, make_cutouts, mean, std, fixed=None, z_orig=None, init_weight=0.0):
    """The notebook's loss of latent z [1,E,h,w]: straight-through quantize, decode, clamp with gradient, cutouts,
    CLIP, the prompts' spherical distances; plus `init_weight` x MSE to `z_orig` / 2 as the notebook writes it."""
    codebook = model.embedding.weight
    z_q = vector_quantize(z.movedim(1, 3), codebook).movedim(3, 1)
    out = clamp_with_grad(model.decode(z_q).add(1).div(2), 0, 1)
    iii = perceptor.encode_image((make_cutouts(out, fixed) - mean) / std).float()
    loss = sum(prompt(iii) for prompt in prompts)
    if init_weight:
        loss = loss + F.mse_loss(z, z_orig) * init_weight / 2
    return loss


def make_loop(model, perceptor, tokenizer, size: int, cutn: int, device: torch.device, lr: float = 0.1):
    """The setup of the scripts (random one-hot z, cached text embedding, Adam), returning one `train()` step."""
    mean = torch.tensor([0.48145466, 0.4578275, 0.40821073], device=device).view(1, 3, 1, 1)
    std = torch.tensor([0.26862954, 0.26130258, 0.27577711], device=device).view(1, 3, 1, 1)
    cut_size = perceptor.visual.image_size
    cut_size = cut_size[0] if isinstance(cut_size, (tuple, list)) else cut_size
    make_cutouts = MakeCutouts(cut_size, cutn)
    codebook = model.embedding.weight
    f = 2 ** (model.decoder.num_resolutions - 1)
    toksX, toksY = size // f, size // f
    n_toks = codebook.shape[0]
    one_hot = F.one_hot(torch.randint(n_toks, [toksY * toksX], device=device), n_toks).float()
    z = (one_hot @ codebook).view([-1, toksY, toksX, codebook.shape[1]]).permute(0, 3, 1, 2)
    z_min = codebook.min(dim=0).values[None, :, None, None]
    z_max = codebook.max(dim=0).values[None, :, None, None]
    z.requires_grad_(True)
    opt = torch.optim.Adam([z], lr=lr)
    with torch.no_grad():
        embed = perceptor.encode_text(tokenizer([BENCH_PROMPT]).to(device)).float()
    prompts = [Prompt(embed, 1.0).to(device)]

    def train():
        opt.zero_grad(set_to_none=True)
        loss = textbook_loss(model, perceptor, z, prompts, make_cutouts, mean, std)
        loss.backward()
        opt.step()
        with torch.no_grad():
            z.copy_(z.maximum(z_min).minimum(z_max))
        return loss.item()

    return train
