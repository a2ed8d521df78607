"""How well a CLIP knows the held-out pairs: image<->text retrieval recall@1/@5 and, when the captions name classes,
zero-shot accuracy over them (open_clip's recipe: per class the mean of its templates' unit text embeddings)."""

from __future__ import annotations

import re
from typing import Callable, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vqclip.train.data import Pair, load_images

MAX_DERIVED = 100  # distinct captions at most, for the captions themselves to be the classes


@torch.no_grad()
def embed(model: nn.Module, tokenizer: Callable, transform: Callable, pairs: Sequence[Pair], device: torch.device,
          batch: int = 64) -> tuple[Tensor, Tensor]:
    """(image, caption) unit features [N,D] float32 of the pairs (eval transform, fp32, no grad)."""
    was = model.training
    model.eval()
    imgs, txts = [], []
    for i in range(0, len(pairs), batch):
        part = pairs[i:i + batch]
        imgs.append(F.normalize(model.encode_image(load_images(part, transform).to(device)).float(), dim=-1))
        txts.append(F.normalize(model.encode_text(tokenizer([p.caption for p in part]).to(device)).float(), dim=-1))
    model.train(was)
    return torch.cat(imgs), torch.cat(txts)


def _hits(sim: Tensor, same: Tensor, k: int) -> float:
    """Share of rows of `sim` [N,M] whose k best columns hold a right one (`same` [N,M] bool)."""
    top = sim.topk(min(k, sim.shape[1]), dim=1).indices
    return float(same.gather(1, top).any(1).float().mean())


def retrieval(img_f: Tensor, txt_f: Tensor, captions: Sequence[str]) -> dict[str, float]:
    """Recall@1/@5 of image->text and text->image over N pairs (unit features [N,D]); a retrieved item is right when
    its caption is the query's own caption text (two images captioned alike are both right answers)."""
    ids = {c: i for i, c in enumerate(dict.fromkeys(captions))}
    label = torch.tensor([ids[c] for c in captions])
    same = label[:, None] == label[None, :]
    sim = img_f @ txt_f.t()
    return {"image_to_text_r1": _hits(sim, same, 1), "image_to_text_r5": _hits(sim, same, 5),
            "text_to_image_r1": _hits(sim.t(), same, 1), "text_to_image_r5": _hits(sim.t(), same, 5)}


def labels_of(captions: Sequence[str], classes: Optional[Sequence[str]]) -> tuple[list[str], list[Optional[str]]]:
    """(classes, the class of each caption or None). Given classes: a caption's class is the one it names as a whole
    word (case ignored; none or several: None). Not given: the distinct captions are the classes when there are at
    most MAX_DERIVED of them and each captions two images or more; else no classes ([])."""
    if classes:
        words = [re.compile(rf"\b{re.escape(c.lower())}\b") for c in classes]
        found = [[c for c, w in zip(classes, words) if w.search(cap.lower())] for cap in captions]
        return list(classes), [f[0] if len(f) == 1 else None for f in found]
    counts = {c: captions.count(c) for c in dict.fromkeys(captions)}
    if len(counts) < 2 or len(counts) > MAX_DERIVED or min(counts.values()) < 2:
        return [], [None] * len(captions)
    return list(counts), list(captions)


@torch.no_grad()
def class_embeddings(model: nn.Module, tokenizer: Callable, classes: Sequence[str], templates: Sequence[str],
                     device: torch.device) -> Tensor:
    """Unit class embeddings [C,D]: each class's templates encoded, unit, averaged, unit again (open_clip's
    zero-shot classifier)."""
    out = []
    for c in classes:
        f = F.normalize(model.encode_text(tokenizer([t.format(c) for t in templates]).to(device)).float(), dim=-1)
        out.append(F.normalize(f.mean(0), dim=-1))
    return torch.stack(out)


def zero_shot(img_f: Tensor, class_f: Tensor, classes: Sequence[str], labels: Sequence[Optional[str]]
              ) -> Optional[dict]:
    """Top-1 accuracy over the images with a class (unit image features [N,D] against class features [C,D]), overall
    and per class; None when no image has a class."""
    keep = [i for i, lab in enumerate(labels) if lab is not None]
    if not keep:
        return None
    pred = (img_f[keep] @ class_f.t()).argmax(1).tolist()
    truth = [classes.index(labels[i]) for i in keep]
    per = {c: [p == t for p, t in zip(pred, truth) if t == k] for k, c in enumerate(classes)}
    return {"accuracy": sum(p == t for p, t in zip(pred, truth)) / len(keep), "images": len(keep),
            "per_class": {c: sum(v) / len(v) for c, v in per.items() if v}}


def evaluate(model: nn.Module, tokenizer: Callable, transform: Callable, pairs: Sequence[Pair], device: torch.device,
             classes: Optional[Sequence[str]] = None, templates: Sequence[str] = ("{}",)) -> dict:
    """Retrieval recall and (when the captions name classes) zero-shot accuracy on held-out pairs."""
    img_f, txt_f = embed(model, tokenizer, transform, pairs, device)
    captions = [p.caption for p in pairs]
    out: dict = {"pairs": len(pairs), **retrieval(img_f, txt_f, captions)}
    names, labels = labels_of(captions, classes)
    if names:
        out["zero_shot"] = zero_shot(img_f, class_embeddings(model, tokenizer, names, templates, device), names,
                                     labels)
    return out
