"""What each mode needs and refuses, torch-free, so that a job is checked before anything heavy runs: its checks
(one line naming the key and the fix), the files it reads and, for a restyle, its frame count (the one place that
counts them). The mode classes themselves (still.py, zoom.py, restyle.py) run the job."""

from __future__ import annotations

from pathlib import Path

from ..errors import VqclipError, shown
from ..files.video import count_frames


def _require(key: str, value, ok: bool, rule: str) -> None:
    """`KEY: must be RULE, got VALUE` unless `ok` (as the config's own checks say it)."""
    if not ok:
        raise VqclipError(f"{key}: must be {rule}, got {shown(value)}")


def _one_start(cfg) -> None:
    """Best of n picks the start of a still image: a video has none to pick."""
    if cfg.candidates.n > 1:
        raise VqclipError("candidates.n > 1 picks the best start of a still image; it cannot be combined with "
                          "animation.mode: zoom or restyle.input (set candidates.n: 1)")


def _no_edit(cfg, what: str) -> None:
    """An edit (a mask, an outpaint) keeps part of one still image: a video moves or replaces it."""
    if cfg.init.mask or any(cfg.init.extend):
        key = "init.mask" if cfg.init.mask else "init.extend"
        raise VqclipError(f"{key}: an edit keeps part of a still image and cannot be combined with {what}; unset "
                          f"{key}, or make a still image")


CAMERA_TRACKS = ("translation_z", "rotation_3d_x", "rotation_3d_y", "rotation_3d_z")  # the 3D camera's moves


def wants_camera(animation) -> bool:
    """Whether a job's `animation:` section moves the 3D camera at any step (a 3D value set non-zero anywhere), so
    that its run loads the depth model."""
    from ..optim.schedules import parse_keyframed  # torch-free

    return any(v != 0 for key in CAMERA_TRACKS for _, v in parse_keyframed(getattr(animation, key),
                                                                            f"animation.{key}"))


class StillRules:
    """A still image (a story and best of n included): one image, and no video section may say otherwise."""

    name = "still"
    title = "a still image"
    across_devices = True  # its cutouts can be shared out over several devices (`devices:`)

    def check(self, cfg) -> None:
        """Refuse what this mode cannot run, with the key and the fix."""
        if cfg.mode == self.name and (cfg.animation.mode != "none" or cfg.restyle.input):
            said = "animation.mode: zoom" if cfg.animation.mode != "none" else "restyle.input"
            raise VqclipError(f"mode: still makes one image, but {said} asks for a video; set mode: auto (or the "
                              "mode of that video), or unset it")

    def inputs(self, cfg) -> list[tuple[str, str, str]]:
        """(key, path, kind) of the files this mode reads beside the job's own (init image, image prompts)."""
        return []


class ZoomRules(StillRules):
    """A zoom, rotate and pan video: a still run moved every `animation.every` steps."""

    name = "zoom"
    title = "a zoom video"
    across_devices = False

    def check(self, cfg) -> None:
        if cfg.restyle.input:
            raise VqclipError("mode: zoom moves an image of its own and cannot restyle a video (restyle.input is set); "
                              "pick one: unset restyle.input, or set mode: restyle")
        _one_start(cfg)
        _no_edit(cfg, "a zoom video")


class RestyleRules(StillRules):
    """A video restyled frame by frame (`restyle.input`)."""

    name = "restyle"
    title = "a restyle"
    across_devices = False

    def check(self, cfg) -> None:
        r = cfg.restyle
        if not r.input:
            raise VqclipError("mode: restyle needs the video to restyle; set restyle.input (`vqclip restyle IN.mp4`)")
        if cfg.animation.mode != "none":
            raise VqclipError("restyle.input and animation.mode: zoom cannot be combined; pick one")
        _one_start(cfg)
        _no_edit(cfg, "a restyle")
        if cfg.steer:
            raise VqclipError("steer: a restyle cannot be steered yet (its steps start over at each frame); drop the "
                              "steer: list")
        _require("restyle.steps_per_frame", r.steps_per_frame, r.steps_per_frame >= 1, ">= 1")
        _require("restyle.blend", r.blend, 0 <= r.blend < 1, "in [0, 1) (0 = independent frames)")
        _require("restyle.max_frames", r.max_frames, r.max_frames >= 0, ">= 0 (0 = all frames)")
        _require("restyle.fps", r.fps, r.fps is None or r.fps > 0, "> 0 (unset = the input's rate)")

    def inputs(self, cfg) -> list[tuple[str, str, str]]:
        return [("restyle.input", cfg.restyle.input, "video")]

    def frame_count(self, cfg) -> int:
        """The input frames a restyle makes: the video's (ffmpeg decodes it once to count them), at most
        restyle.max_frames when that is set."""
        total = count_frames(Path(cfg.restyle.input))
        return min(total, cfg.restyle.max_frames) if cfg.restyle.max_frames else total
