"""Training of the mini preset's models (VQGAN, CLIP, shape guide) on the mini world; no run imports it.
Reproduce the shipped weights with `python -m vqclip.mini.train vqgan|clip|guide --seed 0 --out DIR`.

It uses `vqclip.train.clip`'s schedule (`lr_factor`), AdamW groups (`param_groups`, given its own rule), unit
features (`features`, fp32) and ETA. It keeps its own, on purpose (each also keeps the shipped weights reproducible):
- the loss: soft targets over every caption true of an image, plus generated negatives (ClipLoss has one per row);
- the VQGAN step: trained from scratch (warm-up unquantised, codebook set from encoder outputs, dead codes moved);
- the data: fresh procedural scenes every step from a seeded generator, not a folder's epochs;
- the held-out figures: PSNR and attribute accuracy through the generation path, as MODEL_CARD.md reports them;
- the files: fp16 safetensors + config inside the package (small to ship), not a float32 preset folder."""
