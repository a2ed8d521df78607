"""Mutations of the 3D camera of zoom videos (issue 38): its math (optim/camera.py), its moves (modes/zoom3d.py and
zoom.py's 3D part), its checks and its place on the page."""

from ._table import M

CAM, Z3D, ZOOM = "vqclip/optim/camera.py", "vqclip/modes/zoom3d.py", "vqclip/modes/zoom.py"
CHECKS, RULES, OPTIONS = "vqclip/config/checks.py", "vqclip/modes/rules.py", "vqclip/ui/options.py"
GEOM, RUNS, CC = ("tests/test_camera.py",), ("tests/test_zoom3d.py",), ("tests/test_camera_checks.py",)

MUTATIONS = [
    # --- the math
    M("near and far swapped: the nearest thing is the one that barely moves", CAM,
      "return 1 / (t / near + (1 - t) / far)", "return 1 / (t / far + (1 - t) / near)", GEOM),
    M("depth linear in the disparity, not its inverse (mid-depth things move wrong)", CAM,
      "return 1 / (t / near + (1 - t) / far)", "return near + (1 - t) * (far - near)", GEOM),
    M("a flat depth estimate lies at far: a flat picture never flies in", CAM,
      "torch.where(flat, torch.ones_like(disparity),", "torch.where(flat, torch.zeros_like(disparity),", GEOM),
    M("fov spans the longer side (wide videos turn too little)", CAM, "f = min(width, height) / 2",
      "f = max(width, height) / 2", GEOM),
    M("the principal point half a pixel off the centre (a fly-in drifts)", CAM, "[f, 0.0, (width - 1) / 2]",
      "[f, 0.0, width / 2]", GEOM),
    M("the rotations turn the other way", CAM, "axis[0, i] = math.radians(deg)", "axis[0, i] = -math.radians(deg)",
      GEOM),
    M("the turns composed in the other order (R_z R_y R_x)", CAM, "r = r @ axis_angle_to_rotation_matrix(axis)",
      "r = axis_angle_to_rotation_matrix(axis) @ r", GEOM),
    M("the new view's depth never refined: a fly-in zooms by (d + t)/d, not d/(d - t)", CAM,
      "iterations: int = 2) -> tuple", "iterations: int = 0) -> tuple", GEOM),
    M("translation_z flies backwards", CAM, "torch.tensor([0.0, 0.0, forward]", "torch.tensor([0.0, 0.0, -forward]",
      GEOM),
    M("a plane flown past still shows (what is behind the camera counts as covered)", CAM,
      "torch.where(ahead & (old[..., 2:] > 0), src,", "torch.where(old[..., 2:] > 0, src,", GEOM),
    M("a sample past the left edge counts as covered", CAM, "(x < -EDGE)", "(x < -1 - EDGE)", GEOM),
    M("pixel centres read with align_corners=True (the whole view shifts half a pixel)", "vqclip/optim/flowwarp.py",
      "return (2 * points + 1) / size - 1", "return 2 * points / size - 1", GEOM),
    M("the move's padding ignored (the uncovered border is always the border's colour)", CAM,
      "moved = sample(image, src, padding).clamp(0, 1)", "moved = sample(image, src).clamp(0, 1)", GEOM),
    # --- a 3D move
    M("depth_size ignored: the depth model always sees 518", Z3D, "depth(image, camera.depth_size)",
      "depth(image, 518)", GEOM),
    M("the depth pass joins the autograd", Z3D,
      "    with torch.no_grad():  # the depth never joins the latent's autograd\n", "    if True:\n", GEOM),
    M("a move's near and far swapped", Z3D, "camera.near, camera.far)", "camera.far, camera.near)", GEOM + RUNS),
    M("the 2D zoom, turn and shift of a 3D move dropped", Z3D, "points = points_2d(theta, w, h).to(image.device)",
      "points = None", GEOM),
    M("outpaint ignored in a 3D move: the border stays the reflection", Z3D,
      "if not outpaint or not bool(new.any()):", "if True:", GEOM),
    M("the job's fov ignored", Z3D, "a.fov, a.near,", "40.0, a.near,", RUNS),
    M("a 3D move's tracks read at step 0", Z3D, "value_at(track, step) for track in self.tracks",
      "value_at(track, 0) for track in self.tracks", RUNS),
    # --- the zoom mode
    M("no move is ever 3D", ZOOM, "return self.camera is not None and any(v != 0 for v in self.camera.at(step))",
      "return self.camera is not None", RUNS),
    M("the depth model loaded again by every hook (twice a run)", ZOOM,
      "if wants_camera(cfg.animation) and self.depth is None:", "if wants_camera(cfg.animation):", RUNS),
    M("a 2D zoom loads the depth model", ZOOM, "if wants_camera(cfg.animation) and self.depth is None:",
      "if self.depth is None:", RUNS),
    M("a negative 3D value is no 3D move", RULES, "return any(v != 0 for key in CAMERA_TRACKS",
      "return any(v > 0 for key in CAMERA_TRACKS", CC),
    # --- the checks
    M("fov 180 accepted", CHECKS, "0 < a.fov < 180", "0 < a.fov <= 180", CC),
    M("fov 0 accepted", CHECKS, "0 < a.fov < 180", "0 <= a.fov < 180", CC),
    M("near 0 accepted", CHECKS, "a.near, a.near > 0,", "a.near, a.near >= 0,", CC),
    M("near == far accepted", CHECKS, "if not a.near < a.far:", "if not a.near <= a.far:", CC),
    M("depth_size any even number", CHECKS, "a.depth_size % 14 == 0", "a.depth_size % 2 == 0", CC),
    M("3D values accepted in a still image or a restyle", CHECKS,
      'if wants_camera(a) and mode_name(cfg) != "zoom":', "if False:", CC),
    # --- the page
    M("a hidden key hides every key it prefixes (animation.depth hides depth_size)", OPTIONS,
      "if opt.key.startswith(HIDDEN_SECTIONS) or opt.key in HIDDEN:",
      "if opt.key.startswith(HIDDEN) or opt.key in HIDDEN:", ("tests/test_ui_options.py",)),
]
