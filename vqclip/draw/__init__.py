"""Image models ("drawers"): what a run optimises and how it becomes an image (vqclip.draw.registry names them)."""
