"""The job config (layer 1): each option defined once with its default, help, flag and allowed values
(`job.py`), merged strictly from layers (`layers.py`) and checked with exact messages (`checks.py`). torch-free."""

from .checks import check, check_inputs
from .job import (MAX_SIDE, AnimationConfig, CandidatesConfig, ClipConfig, CutoutsConfig, GenerateConfig,
                  GuideConfig, InitConfig, OptimizerConfig, OutputConfig, RestyleConfig, SteerEntry, StoryKeyframe,
                  VQGANConfig)
from .job import BranchConfig
from .layers import merge_layers, to_dict, to_yaml

__all__ = ["MAX_SIDE", "AnimationConfig", "CandidatesConfig", "ClipConfig", "CutoutsConfig", "GenerateConfig",
           "GuideConfig", "InitConfig", "OptimizerConfig", "OutputConfig", "RestyleConfig", "SteerEntry",
           "StoryKeyframe", "VQGANConfig", "check", "check_inputs", "merge_layers", "to_dict", "to_yaml"]
__all__ += ["BranchConfig"]
