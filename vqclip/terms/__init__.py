"""Loss terms beside CLIP as plug-ins (init, tv, guide, palette, symmetry, tile): see `base.Term` and `registry`."""
