"""The mini world: a procedural image-caption world and a small VQGAN + CLIP pair trained on it (the ``mini`` preset)."""
from pathlib import Path

#: folder of the shipped mini weights (vqgan.yaml, vqgan.safetensors, clip.json, clip.safetensors, MODEL_CARD.md)
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
