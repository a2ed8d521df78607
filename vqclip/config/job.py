"""The job: every option of a run as a typed field with its default, help, flag and allowed values (see `option`).

Layers fill it in this order: these defaults, a preset's defaults, a PNG's job (`--from`), YAML files, the command
line (vqclip.config.layers). The allowed names come from the modules that implement them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from ..files.video import INTERPOLATE_METHODS, MAX_INTERPOLATE, VIDEO_FORMATS
from ..modes.registry import MODE_CHOICES
from ..nets.device import DECODER_LAYOUTS, PRECISIONS
from ..nets.memory import MEMORY_MODES
from ..optim.augments import AUGMENTS
from ..optim.inits import INITS, MASK_INITS
from ..optim.optimizers import OPTIMIZERS
from ..optim.schedules import LR_SCHEDULES, STORY_MODES
from ..terms.registry import SYMMETRY_AXES
from ..draw.registry import DRAWERS
from .fields import option

ANIMATION_MODES = ("none", "zoom")
GRID_PADDINGS = ("reflection", "border", "zeros")  # torch grid_sample's padding modes
PADDINGS = (*GRID_PADDINGS, "outpaint")  # outpaint: the uncovered border starts as an outpaint's new area
MAX_SIDE = 4096
DEPTH_MODEL = "depth-anything-v2-small"  # Apache-2.0 (docs/animation.md says why)
RESTYLE_FLOWS = ("none", "dis", "farneback", "raft-small")  # vqclip.nets.flow's methods, and none


@dataclass
class VQGANConfig:
    config: Optional[str] = option(None, help="taming model YAML", flag="--vqgan-config", metavar="YAML",
                                   unset="the preset's", path="server")
    checkpoint: Optional[str] = option(None, help="VQGAN weights: Lightning .ckpt or .safetensors",
                                       flag="--vqgan-checkpoint", metavar="CKPT", unset="the preset's", path="server")


@dataclass
class ClipConfig:
    model: str = option("ViT-B-32", help="open_clip name, architecture JSON, model folder, hf-hub:ORG/REPO or "
                                         "local-dir:PATH", metavar="NAME|JSON", path="model")
    pretrained: Optional[str] = option("openai", help="open_clip tag, a weights file, or null for random weights",
                                       metavar="TAG|FILE", path="model")
    weight: float = option(1.0, help="share of this model in the loss", metavar="W")


CLIP_FLAGS = {"model": "--clip-model", "pretrained": "--clip-pretrained", "weight": "--clip-weight"}


@dataclass
class CutoutsConfig:
    n: int = option(32, help="cutouts per step", flag="--cutn", metavar="N")
    pow: float = option(1.0, help="cutout size skew: >1 favours small cutouts, <1 large ones", flag="--cut-pow",
                        metavar="P", label="cutout size skew")
    min_size: float = option(0.0, help="smallest cutout as a share of the short side (0: CLIP's input size)")
    augments: list[str] = option(help="Kornia augments of the cutouts, in order", flag="--augments", metavar="A,B",
                                 choices=AUGMENTS, split=",", factory=lambda: ["affine", "perspective", "noise"])
    noise: float = option(0.1, help="largest std of the per-cutout noise augment")


@dataclass
class OptimizerConfig:
    name: str = option("adam", help="optimiser (torch.optim)", flag="--optimizer", metavar="NAME",
                       choices=tuple(OPTIMIZERS), label="optimiser")
    lr: float = option(0.1, help="learning rate", flag="--lr", metavar="LR", label="learning rate")
    schedule: str = option("constant", help="learning-rate decay to lr * min_factor at the last step",
                           flag="--schedule", choices=LR_SCHEDULES)
    min_factor: float = option(0.1, help="the share of lr a schedule decays to")


@dataclass
class InitConfig:
    kind: str = option("random", help="how to start; background = flat in the colour the prompt names after 'on'",
                       flag="--init", choices=tuple(INITS))
    image: Optional[str] = option(None, help="start from this image: sets init.kind: image wherever it is given "
                                  "(another init.kind beside it is an error)", flag="--init-image",
                                  metavar="PATH", implies=("init.kind", "image"), label="init image", path="image")
    weight: float = option(0.0, help="keep the latent near its start: adds weight x MSE(z, z_start)",
                           flag="--init-weight", metavar="W")
    color: Optional[list[float]] = option(None, help="RGB in [0,1] for init.kind flat (random when unset)")
    mask: Optional[str] = option(None, help="edit init.image: white may change, grey partly, black is kept exactly "
                                 "(any size: resized to the image); saved as the run's mask.png", flag="--mask",
                                 metavar="PATH", label="edit mask", path="image")
    mask_feather: int = option(8, help="pixels over which the mask fades out around its edge (an outpaint: its seam "
                                       "into the new area)", flag="--mask-feather", metavar="PX")
    mask_init: str = option("keep", help="what the area under the mask starts from: keep (the image; an outpaint's "
                                         "new area: noise), noise, or blur (the image blurred)", choices=MASK_INITS)
    extend: list[int] = option(help="outpaint: grow the canvas around init.image (which covers size) by LEFT TOP RIGHT "
                                    "BOTTOM pixels; only the new area and its seam change", flag="--extend",
                               metavar=("LEFT", "TOP", "RIGHT", "BOTTOM"), nargs=4, factory=lambda: [0, 0, 0, 0],
                               label="outpaint (extend the canvas)")


@dataclass
class UpscaleConfig:
    model: Optional[str] = option(None, help="upscaler preset or weights file: final.png is also written upscaled as "
                                        "final_xN.png (needs vqclip[upscale]; null: no upscale)", metavar="NAME|PATH",
                                  path="model")
    scale: Optional[int] = option(None, help="N of final_xN.png (null: the model's own); below the model's, its "
                                        "output is resized down")
    tile: int = option(192, help="tile side in input pixels, so memory stays bounded (0: the whole image at once)")


@dataclass
class OutputConfig:
    dir: Optional[str] = option(None, help="run folder (default: outputs/<time>-<prompt>)", flag="--out",
                                metavar="DIR", path="server")
    save_every: int = option(50, help="save a frame every K steps, step 0 included; 0: no frames",
                             flag="--save-every", metavar="K")
    video: bool = option(True, help="write the progress video", flag="--no-video", negate=True,
                         flag_help="do not write the progress video")
    video_format: str = option("mp4", help="progress video format", flag="--video-format", choices=VIDEO_FORMATS)
    fps: int = option(30, help="frames per second of the video", flag="--fps", metavar="N")
    progress: bool = option(True, help="progress bar and notices on stderr", flag="--quiet", negate=True,
                            flag_help="no progress bar or notices")
    video_length: Optional[float] = option(None, help="video seconds: picks the fps from the frame count",
                                           flag="--video-length", metavar="SECONDS", unset="--fps decides")
    interpolate: int = option(0, help=f"in-between frames made in each gap of the video (0-{MAX_INTERPOLATE}; the "
                                      "saved frames stay as they are): the fps is multiplied by N+1, so the video "
                                      "keeps its length (video_length still sets it)", flag="--interpolate",
                              metavar="N")
    interpolate_method: str = option("flow", help="how in-betweens are made: flow (optical flow both ways, "
                                                  "occlusion-aware), blend (a cross-fade), ffmpeg (its minterpolate)",
                                     flag="--interpolate-method", choices=INTERPOLATE_METHODS)
    gif_max_side: Optional[int] = option(None, help="shrink GIF frames so no side exceeds this",
                                         flag="--gif-max-side", metavar="PX", unset="full size")
    upscale: UpscaleConfig = option(help="super-resolution of final.png at the end of a run", factory=UpscaleConfig)
    report: bool = option(True, help="write report.html and report/*.png (loss per term, judge scores, frames, job, "
                                     "speed) at the end; needs matplotlib (vqclip[report])", flag="--no-report",
                          negate=True, flag_help="no report.html at the end (`vqclip report RUN` makes it later)")
    judge: bool = option(False, help="score every saved frame with the preset's held-out judge, a CLIP that did not "
                                     "guide the run, into scores.json beside the guide's score", flag="--judge")
    keep_best: bool = option(False, help="also write best.png, the saved frame the judge scored highest (judges the "
                                         "frames)", flag="--keep-best")
    patience: Optional[int] = option(None, help="end the run once the judge has not improved for K scored frames "
                                                "(judges the frames)", flag="--patience", metavar="K", unset="off")


@dataclass
class CandidatesConfig:
    n: int = option(1, help="best of N starts, run together; the best-scored after candidates.steps goes on (1: off)",
                    flag="--candidates", metavar="N")
    steps: float = option(0.1, help="trial steps the starts run together before the pick: below 1 a share of steps, "
                                    "else a number of steps")
    views: int = option(32, help="augmented views each start is scored on (the same for every start)")
    clip: list[ClipConfig] = option(help="models that score the starts (empty: the job's CLIP)", factory=list,
                                    item=ClipConfig)
    keep: int = option(1, help="with n images: the keep best-scored starts of one batch go on, one image each (1: "
                               "each image its own seed and pick)")
    rank: int = option(0, help="which start goes on, by score: 0 the best, 1 the second best, ... (set by keep)")


@dataclass
class GuideConfig:
    model: Optional[str] = option(None, help="guide classifier architecture JSON (null: no guidance)", path="server")
    weights: Optional[str] = option(None, help="its weights (.safetensors, or a torch file read without running code)",
                                    path="server")
    weight: float = option(0.1, help="share of its cross-entropy for the label the prompt names")
    views: int = option(4, help="augmented views of the image it scores per step")


@dataclass
class PaletteConfig:
    colors: list[str] = option(help="palette colours: names or #rrggbb (PIL's ImageColor names); none: no palette",
                               flag="--palette", metavar="C,C", split=",", factory=list)
    image: Optional[str] = option(None, help="also take palette.size colours of this image (k-means)",
                                  flag="--palette-image", metavar="PATH", path="image")
    size: int = option(8, help="colours taken from palette.image")
    weight: float = option(1.0, help="share of each pixel's distance to its nearest palette colour")
    hard: bool = option(False, help="snap the shown image to the palette (straight-through gradient): every pixel "
                                    "of final.png is a palette colour", flag="--palette-hard")


@dataclass
class SymmetryConfig:
    axes: list[str] = option(help="mirror symmetry: x (left-right), y (top-bottom); none: off", flag="--symmetry",
                             metavar="x,y", choices=SYMMETRY_AXES, split=",", factory=list)
    weight: float = option(1.0, help="share of the mean difference of the image and its mirror image")


@dataclass
class StoryKeyframe:
    at: int = option(0, help="step (in a restyle: input frame) from which this prompt is the target")
    prompt: str = option("", help="'text:weight[:stop][@region]|text:weight'")
    weight: float = option(1.0, help="scales every weight of this keyframe's prompt")


@dataclass
class SteerEntry:
    at: int = option(0, help="step at whose start this change takes effect (a steer made while the run went)")
    prompt: str = option("", help="the prompt from this step on, 'text:weight[:stop]|...' (empty: unchanged)")
    lr: Optional[float] = option(None, help="the learning rate from this step on (the schedule goes on from it)",
                                 unset="unchanged")
    negative: Optional[list[str]] = option(None, help="the negative prompts from this step on ([]: none)",
                                           unset="unchanged")
    images: Optional[list[str]] = option(None, help="the image prompts from this step on, PATH[:weight[:stop]] ([]: "
                                         "none)", unset="unchanged")
    guide_weight: Optional[float] = option(None, help="guide.weight from this step on", unset="unchanged")
    mask: Optional[str] = option(None, help="init.mask from this step on: the edit mask (the job edits init.image)",
                                 unset="unchanged")


@dataclass
class BranchConfig:
    parent: str = option("", help="the run folder this run branched from (its name, beside this one; empty: none)")
    step: int = option(0, help="the step of the parent run this run branched at (its state then is this run's start)")


@dataclass
class AnimationConfig:
    mode: str = option("none", help="zoom: move the image every `every` steps, one video frame each",
                       choices=ANIMATION_MODES, label="animation")
    every: int = option(10, help="steps per move = per video frame (replaces output.save_every in zoom mode)",
                        flag="--every", metavar="K")
    zoom: Any = option(1.0, help="scale per frame (>1 zooms in): a number, {step: value} or '0:1.0, 100:1.05'",
                       flag="--zoom", metavar="Z|KEYS", label="zoom per frame")
    rotate: Any = option(0.0, help="degrees per frame, counter-clockwise; constant or key-framed",
                         flag="--rotate", metavar="DEG|KEYS", label="rotation per frame (degrees)")
    shift_x: Any = option(0.0, help="pixels per frame, content moves right; constant or key-framed",
                          flag="--shift-x", metavar="PX|KEYS", label="shift right per frame (pixels)")
    shift_y: Any = option(0.0, help="pixels per frame, content moves down; constant or key-framed",
                          flag="--shift-y", metavar="PX|KEYS", label="shift down per frame (pixels)")
    padding: str = option("reflection", help="what fills the uncovered border; outpaint: what init.mask_init gives a "
                          "new area (keep: noise)", flag="--padding", choices=PADDINGS)
    reset_optimizer: bool = option(True, help="restart the optimiser after each move (no stale momentum)",
                                   flag="--keep-optimizer", negate=True,
                                   flag_help="keep the optimiser's momentum across moves")
    translation_z: Any = option(0.0, help="3D: units the camera moves forward per frame (>0 flies in; `near` units "
                                "away is the nearest thing); constant or key-framed", flag="--translation-z",
                                metavar="U|KEYS", label="3D move forward per frame")
    rotation_3d_x: Any = option(0.0, help="3D: degrees per frame the camera tilts up (the picture slides down); "
                                "constant or key-framed", flag="--rotation-3d-x", metavar="DEG|KEYS",
                                label="3D tilt up per frame (degrees)")
    rotation_3d_y: Any = option(0.0, help="3D: degrees per frame the camera turns right (the picture slides left); "
                                "constant or key-framed", flag="--rotation-3d-y", metavar="DEG|KEYS",
                                label="3D turn right per frame (degrees)")
    rotation_3d_z: Any = option(0.0, help="3D: degrees per frame the camera rolls, the picture turning "
                                "counter-clockwise; constant or key-framed", flag="--rotation-3d-z",
                                metavar="DEG|KEYS", label="3D roll per frame (degrees)")
    fov: float = option(40.0, help="3D: the camera's field of view across the shorter side, degrees in (0, 180)",
                        flag="--fov", metavar="DEG", label="3D field of view (degrees)")
    near: float = option(200.0, help="3D: distance of the nearest thing the depth model sees (> 0)",
                         label="3D nearest depth")
    far: float = option(10000.0, help="3D: distance of the farthest thing the depth model sees (> near)",
                        label="3D farthest depth")
    depth: str = option(DEPTH_MODEL, help="3D: the depth model, a preset or a weights file (loaded only when a 3D "
                        "value is set)", metavar="NAME|PATH", path="model", label="3D depth model")
    depth_size: int = option(518, help="3D: side of the depth model's input, a multiple of 14 (518: its training "
                             "size)", label="3D depth input side")


@dataclass
class RestyleConfig:
    input: Optional[str] = option(None, help="the video to restyle; set = this job is a restyle job", path="server")
    steps_per_frame: int = option(30, help="optimisation steps per input frame")
    blend: float = option(0.5, help="share of the previous output in each frame's start image, in [0, 1)",
                          flag="--blend", metavar="B")
    keep_aspect: bool = option(True, help="keep the video's aspect, long side max(size); false: exactly size")
    max_frames: int = option(0, help="restyle only the first N frames (0: all)", flag="--max-frames", metavar="N")
    fps: Optional[float] = option(None, help="output frame rate (default: the input's)")
    audio: bool = option(True, help="carry the input's audio track over", flag="--no-audio", negate=True,
                         flag_help="do not carry the audio over")
    flow: str = option("none", help="optical flow between the input frames that stabilises the restyle (default: "
                                    "none, no flow; dis and farneback: OpenCV, pip install 'vqclip[flow]'; raft-small: "
                                    "torchvision's RAFT, the raft-small weights)", flag="--flow", metavar="METHOD",
                       choices=RESTYLE_FLOWS)
    flow_init: float = option(0.0, help="share of the previous output, warped by the flow, in each frame's start "
                                        "(outside occlusions), in [0, 1]; after blend", flag="--flow-init", metavar="W")
    flow_weight: float = option(0.0, help="weight of a term pulling each frame towards the previous output warped by "
                                          "the flow (mean absolute difference outside occlusions)",
                                flag="--flow-weight", metavar="W")


@dataclass
class DrawerConfig:
    name: str = option("vqgan", help="what is optimised: vqgan (the preset's VQGAN latents), pixel (a low-resolution "
                                     "grid, nearest upsampled) or fft (a Fourier image); pixel and fft load no VQGAN "
                                     "and run without the preset's TV unless a TV weight is set",
                       flag="--drawer", metavar="NAME", choices=tuple(DRAWERS), label="image model")
    pixel_size: int = option(4, help="pixel: image pixels per grid cell (size is rounded to a multiple of it)")
    decay: float = option(1.0, help="fft: the spectrum's start and scale fall as 1/frequency^decay (higher: smoother)")
    cutoff: float = option(0.125, help="fft: frequencies above this many cycles per pixel keep their start (lower: "
                                       "broader shapes; 1: every frequency moves)")


@dataclass
class GenerateConfig:
    prompt: str = option("", help="'text:weight[:stop]|text:weight' (a negative weight pushes away; below its stop a "
                                  "cutout stops pulling); 'a ^ b' tells a story; 'text:1@left' pulls in a region "
                                  "(left, right, top, bottom, centre, border, a mask image)")
    negative: list[str] = option(help="text to push away from (weight -1 unless text:weight)", flag="--negative",
                                 metavar="TEXT", repeat=True, factory=list)
    image_prompts: list[str] = option(help="image to aim at, PATH[:weight[:stop]]", flag="--image-prompt",
                                      metavar="PATH[:W]", repeat=True, factory=list, label="image prompt", path="image")
    model: Optional[str] = option(None, help="preset: VQGAN + CLIP + defaults (see `vqclip models`); none named and no "
                                       "VQGAN files: imagenet-16384", flag="--model", metavar="NAME", label="preset")
    steps: int = option(300, help="optimisation steps", flag="--steps", metavar="N")
    size: list[int] = option(help="image width and height; rounded to the image model's factor (VQGAN: its own; "
                                  "pixel: pixel_size)", flag="--size", metavar=("W", "H"), nargs=2,
                             factory=lambda: [256, 256])
    seed: Optional[int] = option(None, help="random seed; drawn and recorded when unset or -1", flag="--seed",
                                 metavar="S")
    n: int = option(1, help="images of the prompt, seeds s, s+1, ...: a run folder each in one batch folder, and "
                            "grid.png", flag="--n", metavar="N", label="images")
    device: str = option("auto", help="auto (cuda, mps, cpu), cpu, cuda, cuda:N or mps", flag="--device", metavar="D")
    devices: list[str] = option(help="one run across several devices (cuda:0,cuda:1; cpu,cpu to try it): a process "
                                "each, each scoring its share of the cutouts (torch.distributed; a still image)",
                                flag="--devices", metavar="D,D", split=",", factory=list)
    precision: str = option("auto", help="autocast: auto = bf16 on CUDA and on CPUs with native bf16 from 128x128",
                            flag="--precision", choices=PRECISIONS)
    memory: str = option("auto", help="low: decoder checkpointing + cutout micro-batches; auto: only when short",
                         choices=MEMORY_MODES)
    micro_batch: int = option(0, help="cutouts per CLIP pass (0: all at once, unless memory picks a number)")
    compile: bool = option(False, help="torch.compile the decoder and CLIP (falls back to eager on failure)")
    decoder_layout: str = option("auto", help="memory layout of the decoder's activations: auto = nchw on CPU "
                                 "(measured faster), channels_last elsewhere", choices=DECODER_LAYOUTS)
    cudnn_benchmark: bool = option(False, help="let cuDNN time its convolution algorithms on the first steps "
                                   "(faster later steps on CUDA; not bit-repeatable)")
    threads: int = option(0, help="CPU threads for torch (0: torch's choice); 1 is fastest on a busy machine",
                          flag="--threads", metavar="N")
    tv_weight: float = option(0.0, help="total-variation prior on the image (smoothness)", flag="--tv-weight",
                              metavar="W", label="smoothness (TV weight)")
    vqgan: VQGANConfig = option(help="VQGAN files (or a preset via model)", factory=VQGANConfig)
    clip: list[ClipConfig] = option(help="CLIP models, each with its loss weight", factory=lambda: [ClipConfig()],
                                    item=ClipConfig, item_flags=CLIP_FLAGS)
    cutouts: CutoutsConfig = option(help="cutouts", factory=CutoutsConfig)
    optimizer: OptimizerConfig = option(help="optimiser", factory=OptimizerConfig)
    init: InitConfig = option(help="start", factory=InitConfig)
    candidates: CandidatesConfig = option(help="best of n starts", factory=CandidatesConfig)
    guide: GuideConfig = option(help="classifier guidance", factory=GuideConfig)
    palette: PaletteConfig = option(help="a limited palette", factory=PaletteConfig)
    symmetry: SymmetryConfig = option(help="mirror symmetry", factory=SymmetryConfig)
    tile: bool = option(False, help="seamless tiles: the image model wraps around (a VQGAN pads circularly) and the "
                                    "cutouts see the image rolled", flag="--tile", label="seamless tiles")
    output: OutputConfig = option(help="outputs", factory=OutputConfig)
    story: list[StoryKeyframe] = option(help="story keyframes: [{at: step, prompt: ..., weight: 1}]", factory=list,
                                        item=StoryKeyframe)
    steer: list[SteerEntry] = option(help="changes made while the run went, replayed at their steps: [{at: step, "
                                          "prompt: ..., lr: ..., negative: [...], ...}]", factory=list, item=SteerEntry)
    branch: BranchConfig = option(help="where a branched run came from (changes no pixel)", factory=BranchConfig)
    story_mode: str = option("switch", help="switch: one keyframe at a time; blend: linear between neighbours",
                             choices=STORY_MODES)
    change_every: int = option(0, help="for 'a ^ b' prompts: steps per part (0: spread evenly over steps)",
                               flag="--change-every", metavar="N")
    story_fade: float = option(0.0, help="at each story keyframe, fade the image this share of the way to a flat "
                                         "canvas in the colour its prompt names after 'on' (else the image's mean), "
                                         "so the next part can take over (0: off)")
    animation: AnimationConfig = option(help="zoom, rotate and pan videos", factory=AnimationConfig)
    restyle: RestyleConfig = option(help="restyle a video", factory=RestyleConfig)
    mode: str = option("auto", help="still, zoom or restyle (vqclip.modes.registry); auto: as the job's sections say "
                                    "(restyle.input set: restyle; animation.mode zoom: zoom; else still)",
                       choices=MODE_CHOICES, label="kind of run")
    state_every: int = option(50, help="save state.pt (for `vqclip resume`) every K steps; 0: only at the end")
    drawer: DrawerConfig = option(help="the image model: what is optimised", factory=DrawerConfig)
