"""Model files (layer 2): presets as data, how a job names a CLIP (`spec`), resolving names to local files once,
downloads with integrity checks, and open_clip's own cache for CLIP weights."""
