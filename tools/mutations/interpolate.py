"""Mutations of in-between frames (output.interpolate: vqclip/optim/interpolate.py, the video writing and checks that
carry it) and of the flicker benchmark (benchmarks/flicker.py): what a user would notice if it broke."""

from ._table import M

INTERP = "vqclip/optim/interpolate.py"
VIDEO = "vqclip/files/video.py"
PIPELINE = "vqclip/runs/pipeline.py"
CHECKS = "vqclip/config/checks.py"
FLICKER = "benchmarks/flicker.py"
T_INTERP = ("tests/test_interpolate.py",)
T_FLICKER = ("tests/test_benchmark_flicker.py",)

MUTATIONS = [
    # --- optim/interpolate.py: the flow in-between, the cross-fade, the frames in order
    M("flow in-betweens read frame a from where the motion started, not where it is at t (the t^2 term dropped)",
      INTERP, "to_a = -(1 - t) * t * flow_ab + t * t * flow_ba", "to_a = -(1 - t) * t * flow_ab", T_INTERP),
    M("flow in-betweens read frame b the wrong way along the backward flow", INTERP,
      "to_b = (1 - t) ** 2 * flow_ab - t * (1 - t) * flow_ba", "to_b = (1 - t) ** 2 * flow_ab + t * (1 - t) * flow_ba",
      T_INTERP),
    M("what only b shows is blended with a's edge pixels (occlusion ignored)", INTERP,
      "seen_a = 1 - warp(occlusion(flow_ba, flow_ab), to_b)", "seen_a = torch.ones_like(flow_ab[:, :1])", T_INTERP),
    M("flow in-betweens weigh the far end more (t and 1-t swapped)", INTERP,
      "wa, wb = (1 - t) * seen_a, t * seen_b", "wa, wb = t * seen_a, (1 - t) * seen_b", T_INTERP),
    M("where both flows disagree the in-between is NaN (no cross-fade fallback)", INTERP, "lost = total < 1e-6",
      "lost = total < 0", T_INTERP),
    M("the cross-fade goes the wrong way (b first)", INTERP,
      "np.rint((1 - t) * a.astype(np.float64) + t * b.astype(np.float64))",
      "np.rint(t * a.astype(np.float64) + (1 - t) * b.astype(np.float64))", T_INTERP),
    M("the first in-between repeats the frame before it (t from 0)", INTERP,
      "ts = [k / (n + 1) for k in range(1, n + 1)]", "ts = [k / (n + 1) for k in range(n)]", T_INTERP),
    M("the in-betweens of each gap come out backwards", INTERP,
      "yield from gap_frames(previous, frame, n, method, flow)",
      "yield from gap_frames(frame, previous, n, method, flow)", T_INTERP),
    M("the flow method falls back to a cross-fade (the flow never asked)", INTERP,
      'if method == "blend":\n        return [blend(a, b, t) for t in ts]', "return [blend(a, b, t) for t in ts]",
      T_INTERP),
    # --- files/video.py: ffmpeg's minterpolate
    M("ffmpeg's in-betweens lose the last saved frame", VIDEO,
      "            proc.stdin.write(np.ascontiguousarray(last).tobytes())  #", "            pass  #", T_INTERP),
    M("ffmpeg's in-betweens at N, not N+1, times the rate (one frame a gap short)", VIDEO,
      "minterpolate=fps={float(fps) * (n + 1)!r}", "minterpolate=fps={float(fps) * n!r}", T_INTERP),
    M("ffmpeg failing is taken for a video of no in-betweens", VIDEO, "        if proc.wait() != 0:",
      "        if proc.wait() != 0 and False:", T_INTERP),
    M("a saved frame that cannot be read is dropped: ffmpeg's video silently ends early", VIDEO,
      "        if failed:\n            raise failed[0]", "        if False:\n            raise failed[0]", T_INTERP),
    M("the frame count with in-betweens counts a gap after the last frame", VIDEO,
      "return (frames - 1) * (n + 1) + 1 if frames else 0", "return frames * (n + 1) if frames else 0", T_INTERP),
    # --- runs/pipeline.py: the fps rule and the method used
    M("in-betweens make the video N+1 times longer (the fps kept)", PIPELINE,
      "mode.fps(cfg, len(saved)) * (n + 1)", "mode.fps(cfg, len(saved))", T_INTERP),
    M("video_length with in-betweens plays longer than asked (the rate of the saved frames only)", PIPELINE,
      "fps = mode.fps(cfg, count) if cfg.output.video_length",
      "fps = mode.fps(cfg, len(saved)) if cfg.output.video_length", T_INTERP),
    M("output.interpolate_method ignored (always a cross-fade)", PIPELINE,
      "inbetweens(read_frames(saved), n, cfg.output.interpolate_method, fps / (n + 1))",
      'inbetweens(read_frames(saved), n, "blend", fps / (n + 1))', T_INTERP),
    M("a restyle with in-betweens keeps only the saved frames' share of its audio", PIPELINE,
      "mux_audio(silent, audio, video, count / fps)", "mux_audio(silent, audio, video, len(saved) / fps)", T_INTERP),
    # --- config/checks.py: the bounds
    M("interpolate 15, the documented most, refused", CHECKS, "0 <= o.interpolate <= MAX_INTERPOLATE",
      "0 <= o.interpolate < MAX_INTERPOLATE", T_INTERP),
    M("interpolate 16 accepted", CHECKS, "0 <= o.interpolate <= MAX_INTERPOLATE",
      "0 <= o.interpolate <= MAX_INTERPOLATE + 1", T_INTERP),
    M("interpolate -1 accepted", CHECKS, "0 <= o.interpolate <= MAX_INTERPOLATE",
      "-1 <= o.interpolate <= MAX_INTERPOLATE", T_INTERP),
    M("an unknown interpolate_method accepted from a job file", CHECKS,
      '_one_of(o.interpolate_method, INTERPOLATE_METHODS, "output.interpolate_method")', "pass", T_INTERP),
    M("a flow in-between without OpenCV fails only at the end of the run", CHECKS,
      'o.interpolate_method == "flow" and find_spec("cv2") is None', 'o.interpolate_method == "flow" and False',
      T_INTERP),
    M("ffmpeg in-betweens of 28 px frames accepted (the run's video fails at its end)", CHECKS,
      'o.interpolate_method == "ffmpeg" and min(cfg.size) < 32',
      'o.interpolate_method == "ffmpeg" and min(cfg.size) < 28', T_INTERP),
    # --- benchmarks/flicker.py: the clip's truth and the metric
    M("the clip's true flow points the way the shape moves (forward, not back)", FLICKER,
      "flow[0][is_] = -speed", "flow[0][is_] = speed", T_FLICKER),
    M("the clip's occlusions are the shape's leading edge, not the background it uncovers", FLICKER,
      "occluded.append(was & ~is_)", "occluded.append(is_ & ~was)", T_FLICKER),
    M("the warp error counts the occluded pixels", FLICKER, "keep = ~torch.as_tensor(np.asarray(occluded, bool))",
      "keep = torch.ones_like(diff, dtype=torch.bool)", T_FLICKER),
    M("the warp error warps the next frame onto the previous one", FLICKER,
      "zip(outputs, outputs[1:], flows, occluded)", "zip(outputs[1:], outputs, flows, occluded)", T_FLICKER),
    M("uint8 frames read on a 0-256 scale", FLICKER, "x / 255.0 if x.dtype", "x / 256.0 if x.dtype", T_FLICKER),
    M("the table's ratio is blend-only over the setting", FLICKER, "f\"{error / base:.2f}\"", "f\"{base / error:.2f}\"",
      T_FLICKER),
    M("the driver ignores the setting's options (every run the preset's blend)", FLICKER,
      '"--no-video", "--quiet", *setting, *extra]', '"--no-video", "--quiet", *extra]', T_FLICKER),
]
