"""Mutations of vqclip/nets/: what a user would notice if it broke (the machinery, not only the math)."""

from ._table import M

MUTATIONS = [
]
