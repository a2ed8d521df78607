"""vqclip: text-to-image with VQGAN+CLIP, and CLIP's other jobs."""

__version__ = "0.1.0"
