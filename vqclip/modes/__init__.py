"""How a job's run differs from a still image (layer 5): best of n starts, story prompts, zoom moves and restyled
videos, each a small object the one pipeline drives; none of them has a loop of its own (see vqclip.optim.loop)."""
