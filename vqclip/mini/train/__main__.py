"""`python -m vqclip.mini.train vqgan|clip|guide`: see vqclip.mini.train.cli."""

from vqclip.mini.train.cli import main

raise SystemExit(main())
