"""Training of the mini preset's models (VQGAN, CLIP, shape guide) on the mini world; no run imports it.
Reproduce the shipped weights with `python -m vqclip.mini.train vqgan|clip|guide --seed 0 --out DIR`."""
