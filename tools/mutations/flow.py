"""Mutations of flow-stabilised restyles: the flow estimators (vqclip/nets/flow.py), the flow math
(vqclip/optim/flowwarp.py), the flow term (vqclip/terms/flow.py), the restyle's flow path (vqclip/modes/stabilise.py,
vqclip/modes/restyle.py), its checks and the cluster keeping it on one worker: a flow the wrong way, an occlusion
ignored, a share or weight ignored, a boundary moved, a resume that forgets the frame before."""

from ._table import M

NETS, WARP, TERM = "vqclip/nets/flow.py", "vqclip/optim/flowwarp.py", "vqclip/terms/flow.py"
STAB, RESTYLE = "vqclip/modes/stabilise.py", "vqclip/modes/restyle.py"
CHECKS, CLUSTER = "vqclip/config/checks.py", "vqclip/runs/cluster.py"
FLOW_T, WARP_T, CHECKS_T = "tests/test_flow.py", "tests/test_flowwarp.py", "tests/test_flow_checks.py"
ST = "tests/test_stabilise.py::"
RUN_T = ST + "test_each_stabilised_start_is_the_blend_then_the_warped_previous_output_outside_occlusions"
TERM_RUN_T = ST + "test_the_flow_term_pulls_towards_the_warped_previous_output_from_the_second_frame"
RESUME_T = ST + "test_a_killed_stabilised_restyle_resumes_to_the_uninterrupted_video"
UNIT_T = (ST + "test_flow_loss_is_the_mean_absolute_difference_over_kept_pixels",
          ST + "test_the_flow_term_is_built_only_with_a_method_and_a_weight_and_pulls_only_when_aimed",
          ST + "test_the_start_takes_the_shifted_previous_output_where_it_is_seen",
          ST + "test_stabilised_needs_a_method_and_a_share_or_a_weight")
CLUSTER_T = ST + "test_the_cluster_keeps_a_stabilised_restyle_on_one_worker_with_a_notice"

MUTATIONS = [
    # --- nets/flow.py: the estimators
    M("DIS gives the flow the wrong way (b to a)", NETS, "PRESET_MEDIUM).calc(a, b, None)",
      "PRESET_MEDIUM).calc(b, a, None)", (FLOW_T,)),
    M("Farneback gives the flow the wrong way (b to a)", NETS, "cv2.calcOpticalFlowFarneback(a, b, None,",
      "cv2.calcOpticalFlowFarneback(b, a, None,", (FLOW_T,)),
    M("every frame of a batch gets the first frame's flow", NETS, "torch.from_numpy(np.stack(flows))",
      "torch.from_numpy(np.stack(flows[:1] * len(flows)))", (FLOW_T,)),
    M("a missing OpenCV is a traceback, not the pip line", NETS,
      "    except ImportError:\n        raise VqclipError(\"restyle.flow dis",
      "    except OSError:\n        raise VqclipError(\"restyle.flow dis", (FLOW_T,)),
    M("the flow joins autograd", NETS, "        with torch.no_grad():\n            return self.estimate",
      "        with torch.enable_grad():\n            return self.estimate", (FLOW_T,)),
    M("RAFT gets frames in [0, 1], not [-1, 1]", NETS, "t.to(self.device, torch.float32) * 2 - 1",
      "t.to(self.device, torch.float32)", (FLOW_T,)),
    M("RAFT padded to a multiple of 8 only: small frames fail its pyramid", NETS,
      "ph = max(RAFT_MIN_SIDE, -(-h // RAFT_MULTIPLE) * RAFT_MULTIPLE) - h",
      "ph = -(-h // RAFT_MULTIPLE) * RAFT_MULTIPLE - h", (FLOW_T,)),
    M("RAFT's first, coarsest flow is used", NETS, "num_flow_updates=RAFT_UPDATES)[-1]",
      "num_flow_updates=RAFT_UPDATES)[0]", (FLOW_T,)),
    M("RAFT weights of another layout load loosely", NETS, "load_state_dict(weights), strict=True)",
      "load_state_dict(weights), strict=False)", (FLOW_T,)),
    M("raft-small ignores the weights file it is given", NETS, "RaftFlow(Path(weights) if weights else",
      "RaftFlow(Path(weights) if False else", (FLOW_T,)),
    M("OpenCV imported with the module: every restyle needs it installed", NETS,
      "from .checkpoints import load_state_dict\n", "from .checkpoints import load_state_dict\nimport cv2\n", (FLOW_T,)),
    # --- optim/flowwarp.py: the flow math
    M("warp samples at p - flow", WARP, "flow.dtype) + flow.permute(0, 2, 3, 1)", "flow.dtype) - flow.permute(0, 2, 3, 1)",
      (WARP_T,)),
    M("warp reads the x flow for y", WARP, "flow.dtype) + flow.permute(0, 2, 3, 1)",
      "flow.dtype) + flow.permute(0, 2, 3, 1)[..., [0, 0]]", (WARP_T,)),
    M("the grid half a pixel off (align_corners=True's formula)", WARP, "return (2 * points + 1) / size - 1",
      "return 2 * points / (size - 1) - 1", (WARP_T,)),
    M("a point just past the right edge counts as inside", WARP, "(x > w - 1)", "(x > w)", (WARP_T,)),
    M("occlusion ignores a flow that leaves the image", WARP, " + outside(flow)).clamp(max=1)", ").clamp(max=1)",
      (WARP_T,)),
    M("occlusion without its constant tolerance beta", WARP, "gap > alpha * scale + beta", "gap > alpha * scale",
      (WARP_T,)),
    M("occlusion compares with the back flow at p, not where p lands", WARP,
      'returned = warp(back, flow, padding="border")', "returned = back", (WARP_T,)),
    M("occlusion's tolerance ignores the motion (alpha)", WARP, "gap > alpha * scale", "gap > 0 * scale", (WARP_T,)),
    # --- terms/flow.py: the flow term
    M("occluded pixels count in the flow term", TERM, "(keep * (image - target).abs()).sum()",
      "(image - target).abs().sum()", UNIT_T),
    M("the flow term averages over every pixel, occluded too", TERM, "(keep.sum() * b * c)",
      "(keep.numel() * b * c)", UNIT_T),
    M("the flow term squares the difference", TERM, "(image - target).abs()).sum()",
      "(image - target).pow(2)).sum()", UNIT_T),
    M("the flow term ignores its weight", TERM, "return self.weight * flow_loss(", "return flow_loss(", UNIT_T),
    M("the flow term built with flow_weight 0", TERM, "and cfg.restyle.flow_weight > 0",
      "and cfg.restyle.flow_weight >= 0", UNIT_T),
    # --- modes/stabilise.py and the restyle's flow path
    M("the previous output warped by the forward flow (the wrong way)", STAB,
      "back, ahead = flow(image, before), flow(before, image)",
      "ahead, back = flow(image, before), flow(before, image)", UNIT_T + (RUN_T,)),
    M("occluded pixels take the warped output too", STAB, "1 - occlusion(back, ahead)",
      "1 - 0 * occlusion(back, ahead)", UNIT_T + (RUN_T,)),
    M("flow_init ignored: the start is all warped output", STAB, "start + self.share * keep * (warped - start)",
      "start + keep * (warped - start)", UNIT_T),
    M("the flow term never aimed", STAB, "self.term.aim(warped, keep)", "self.term.aim(None, None)",
      UNIT_T + (TERM_RUN_T,)),
    M("a restyle with only a flow weight is not stabilised", STAB, "(r.flow_init > 0 or r.flow_weight > 0)",
      "(r.flow_init > 0)", UNIT_T),
    M("the warped share taken before blend (blend mixes the unwarped output over it)", RESTYLE,
      "                start = image if prev is None or r.blend == 0 else (1 - r.blend) * image + r.blend * prev\n"
      "                if stable is not None:  # blend first, then the warped previous output's share\n"
      "                    start = stable.start(start, image, before, prev)\n"
      "                    before = image\n",
      "                start = image\n"
      "                if stable is not None:  # blend first, then the warped previous output's share\n"
      "                    start = stable.start(start, image, before, prev)\n"
      "                    before = image\n"
      "                start = start if prev is None or r.blend == 0 else (1 - r.blend) * start + r.blend * prev\n",
      (RUN_T,)),
    M("the input frame before is not kept: no frame is stabilised", RESTYLE, "                    before = image\n",
      "                    before = None\n", (RUN_T,)),
    M("a resumed stabilised restyle forgets the input frame before the first missing one", RESTYLE,
      "before = frame_to_tensor(frame, size) if stable and i == done - 1 else None", "before = None", (RESUME_T,)),
    # --- checks and the cluster
    M("flow_init 1 (all warped output) refused", CHECKS, "0 <= r.flow_init <= 1", "0 <= r.flow_init < 1",
      (CHECKS_T,)),
    M("a negative flow_init accepted", CHECKS, "0 <= r.flow_init <= 1", "-1 <= r.flow_init <= 1", (CHECKS_T,)),
    M("flow_weight 0 refused", CHECKS, "r.flow_weight >= 0, \">= 0", "r.flow_weight > 0, \">= 0", (CHECKS_T,)),
    M("an unknown flow method accepted", CHECKS, '_one_of(r.flow, RESTYLE_FLOWS, "restyle.flow")',
      'RESTYLE_FLOWS', (CHECKS_T,)),
    M("a flow setting accepted on a still image or a zoom", CHECKS, 'if used and mode_name(cfg) != "restyle":',
      "if False:", (CHECKS_T,)),
    M("a flow share accepted without a flow method", CHECKS, 'if r.flow == "none" and used:', "if False:",
      (CHECKS_T,)),
    M("a stabilised restyle with blend 0 is spread over workers", CLUSTER,
      'job.cfg.restyle.blend != 0 or job.cfg.restyle.flow != "none" or', "job.cfg.restyle.blend != 0 or",
      (CLUSTER_T,)),
    M("no notice that a stabilised restyle runs on one worker", CLUSTER,
      '        elif mode_name(job.cfg) == "restyle" and job.cfg.restyle.flow != "none":',
      "        elif False:", (CLUSTER_T,)),
    M("the flow estimator loaded while preparing is not the one the run uses", RESTYLE,
      "stable = Stabiliser(r, self.flow, objective)", "stable = Stabiliser(r, load_flow('farneback', 'cpu'), objective)",
      ("tests/test_stabilise.py",)),
]
