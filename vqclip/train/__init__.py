"""Training your own models from a folder of images: the shared data handling (`data`), the CLIP trainer (`clip`),
its evaluation (`evaluate`) and export (`export`). Nothing in the generator imports this package."""
