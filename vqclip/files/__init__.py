"""Files and formats (layer 0): atomic writes, images and PNG chunks, job YAML, run folders, every ffmpeg call."""
