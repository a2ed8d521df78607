"""In-between frames of a video (output.interpolate): `n` frames at t = k/(n+1) between each pair of saved frames,
by a cross-fade (blend), by optical flow both ways (flow) or by ffmpeg's motion interpolation (ffmpeg).

The flow method is Super SloMo's intermediate-flow approximation (Jiang et al., CVPR 2018, eq. 4): with F01 the
flow a->b and F10 the flow b->a (vqclip.optim.flowwarp's convention, a(p) ~ b(p + F01(p))), the frame at t reads
a at p + Ft0(p) and b at p + Ft1(p), where Ft0 = -(1-t) t F01 + t^2 F10 and Ft1 = (1-t)^2 F01 - t (1-t) F10 (both
exact for a constant motion), and blends them with weights (1-t) Va and t Vb, where Va (Vb) is 0 at the points
that come from a part of b (a) the other frame does not show (the forward-backward occlusion check).
"""

from __future__ import annotations

from typing import Callable, Iterable, Iterator, Optional

import numpy as np
import torch
from torch import Tensor

from ..files.video import minterpolate
from .flowwarp import occlusion, warp

Flow = Callable[[Tensor, Tensor], Tensor]  # (a, b) [1,3,H,W] in [0,1] -> the flow a->b [1,2,H,W] in pixels


def blend(a: np.ndarray, b: np.ndarray, t: float) -> np.ndarray:
    """The cross-fade (1-t) a + t b of uint8 frames [H,W,3], rounded to uint8."""
    return np.rint((1 - t) * a.astype(np.float64) + t * b.astype(np.float64)).astype(np.uint8)


def flow_between(a: Tensor, b: Tensor, t: float, flow_ab: Tensor, flow_ba: Tensor) -> Tensor:
    """The frame [B,C,H,W] at time t in (0, 1) between a (t=0) and b (t=1), both [B,C,H,W], from the flows a->b and
    b->a [B,2,H,W]: both ends warped to t and blended where each is seen (Super SloMo's approximation)."""
    to_a = -(1 - t) * t * flow_ab + t * t * flow_ba
    to_b = (1 - t) ** 2 * flow_ab - t * (1 - t) * flow_ba
    seen_a = 1 - warp(occlusion(flow_ba, flow_ab), to_b)  # a point b shows and a hides takes b alone
    seen_b = 1 - warp(occlusion(flow_ab, flow_ba), to_a)
    wa, wb = (1 - t) * seen_a, t * seen_b
    total = wa + wb
    lost = total < 1e-6  # hidden in both (a flow that disagrees with itself): the plain cross-fade
    wa, wb = torch.where(lost, 1 - t, wa), torch.where(lost, t, wb)
    return (wa * warp(a, to_a) + wb * warp(b, to_b)) / (wa + wb)


def _tensor(frame: np.ndarray) -> Tensor:
    return torch.tensor(frame).permute(2, 0, 1)[None].float() / 255  # a copy: a frame read back is read-only


def _frame(image: Tensor) -> np.ndarray:
    return (image[0].clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()


def gap_frames(a: np.ndarray, b: np.ndarray, n: int, method: str, flow: Optional[Flow] = None) -> list[np.ndarray]:
    """The `n` uint8 frames [H,W,3] between frames a and b at t = 1/(n+1) ... n/(n+1) (blend or flow)."""
    ts = [k / (n + 1) for k in range(1, n + 1)]
    if method == "blend":
        return [blend(a, b, t) for t in ts]
    ta, tb = _tensor(a), _tensor(b)
    with torch.no_grad():
        flow_ab, flow_ba = flow(ta, tb).float().cpu(), flow(tb, ta).float().cpu()
        return [_frame(flow_between(ta, tb, t, flow_ab, flow_ba)) for t in ts]


def default_flow() -> Flow:
    """OpenCV's DIS optical flow on the CPU (vqclip.nets.flow), loaded only when a video uses the flow method."""
    from ..nets.flow import load_flow  # only the flow method of in-betweens needs an estimator

    return load_flow("dis", "cpu")


def inbetweens(frames: Iterable[np.ndarray], n: int, method: str, fps: float,
               flow: Optional[Flow] = None) -> Iterator[np.ndarray]:
    """uint8 frames [H,W,3] of a video at `fps` with `n` in-betweens in each gap by `method` (flow, blend, ffmpeg);
    blend and flow pass the given frames unchanged. `flow` (a -> b in pixels) defaults to `default_flow()`."""
    if n == 0:
        yield from frames
        return
    if method == "ffmpeg":
        yield from minterpolate(frames, fps, n)
        return
    if method == "flow" and flow is None:
        flow = default_flow()
    previous = None
    for frame in frames:
        if previous is not None:
            yield from gap_frames(previous, frame, n, method, flow)
        yield frame
        previous = frame
