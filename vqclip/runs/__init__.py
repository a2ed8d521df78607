"""Runs (layer 6): a job from its config layers, the one run path (`pipeline`), resume, state files and the step
callbacks (frames, progress, stop)."""
