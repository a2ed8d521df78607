"""The faces besides the CLI and the Python API: CLIP's other jobs (classify, score, search) and the speed benchmark."""
