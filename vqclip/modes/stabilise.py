"""A flow-stabilised restyle, frame by frame: the optical flow between input frames i and i-1, both ways, brings the
previous output into frame i's place (`vqclip.optim.flowwarp.warp`), and the forward-backward check marks where it
cannot (occlusions). `restyle.flow_init` mixes the warped output into the frame's start (Disco Diffusion's
`video_init_flow_warp`), `restyle.flow_weight` pulls the frame towards it during the run (pytti's optical-flow loss);
both only outside occlusions. The flow of the input frames is computed afresh each time, so a resume sees the same."""

from __future__ import annotations

from typing import Optional

from torch import Tensor

from ..optim.flowwarp import occlusion, warp


def stabilised(r) -> bool:
    """Whether a restyle (`RestyleConfig`) uses the flow: a method and a share of the start or a term weight."""
    return r.flow != "none" and (r.flow_init > 0 or r.flow_weight > 0)


def carried(flow, image: Tensor, before: Tensor, prev: Tensor) -> tuple[Tensor, Tensor]:
    """The previous output prev [1,3,H,W] warped into the place of input frame `image` (from input frame `before`,
    both [1,3,H,W] in [0,1]) by the flow image->before, and where to trust it [1,1,H,W] (1: not occluded)."""
    back, ahead = flow(image, before), flow(before, image)
    return warp(prev, back), 1 - occlusion(back, ahead)


class Stabiliser:
    """The flow estimator of `restyle.flow` (`vqclip.nets.flow.FlowModel`) and the start share of `restyle.flow_init`; aims the run's flow term."""

    def __init__(self, r, flow, objective):
        self.flow = flow
        self.share = r.flow_init
        self.term = next((t for t in objective.terms if t.name == "flow"), None)

    def start(self, start: Tensor, image: Tensor, before: Optional[Tensor], prev: Optional[Tensor]) -> Tensor:
        """Frame `image`'s start [1,3,H,W] (already blended): (1 - flow_init) x start + flow_init x the warped previous
        output outside occlusions, the start itself inside them; the flow term aimed at the warped output. The first
        frame made (no previous output) keeps its start and the term pulls nowhere."""
        if prev is None or before is None:
            if self.term is not None:
                self.term.aim(None, None)
            return start
        warped, keep = carried(self.flow, image, before, prev)
        if self.term is not None:
            self.term.aim(warped, keep)
        return start + self.share * keep * (warped - start) if self.share > 0 else start
