"""The faces besides the CLI and the Python API: CLIP's other jobs (classify, score, rank, search) as a Python API."""
