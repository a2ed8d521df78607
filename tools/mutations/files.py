"""Mutations of vqclip/files/: what a user would notice if it broke (the machinery, not only the math)."""

from ._table import M

YAML = "vqclip/files/jobyaml.py"
IMAGES = "vqclip/files/images.py"
INFOTEXT = "vqclip/files/infotext.py"
VIDEO = "vqclip/files/video.py"
GRID = "vqclip/files/grid.py"
T_YAML = ("tests/test_jobyaml.py",)

MUTATIONS = [
    # --- jobyaml.py: the bounds, counted while composing, and YAML read as written
    M("an alias counts one value, not the values it names (the billion laughs hangs)", YAML, "self._count(size)",
      "self._count(1)", T_YAML),
    M("100 aliases refused", YAML, "if self.aliases > MAX_ALIASES:", "if self.aliases >= MAX_ALIASES:", T_YAML),
    M("exactly MAX_NODES values refused", YAML, "if self.nodes > MAX_NODES:", "if self.nodes >= MAX_NODES:", T_YAML),
    M("nesting 65 deep accepted", YAML, "if self.depth > MAX_DEPTH:", "if self.depth > MAX_DEPTH + 1:", T_YAML),
    M("an alias inside what it names not caught", YAML, "if size is None:  #", "if False:  #", T_YAML),
    M("a text one byte over the bound accepted", YAML, "if len(text) > MAX_BYTES:", "if len(text) > MAX_BYTES + 1:",
      T_YAML),
    M("a repeated key keeps the last value", YAML, "if key.value in seen:", "if False:", T_YAML),
    M("a date in a prompt read as a date", YAML, 'if tag != "tag:yaml.org,2002:timestamp"]', "]", T_YAML),
    M("1e-3 read as text (PyYAML's YAML 1.1)", YAML, '"tag:yaml.org,2002:float", re.compile(',
      '"tag:yaml.org,2002:str", re.compile(', T_YAML),
    # --- images.py
    M("a decompression bomb under twice PIL's limit only warns", IMAGES,
      'warnings.simplefilter("error", Image.DecompressionBombWarning)',
      'warnings.simplefilter("ignore", Image.DecompressionBombWarning)', ("tests/test_checks.py",)),
    M("text chunks after the image data not read", IMAGES, "            im.load()  #", "            pass  #",
      ("tests/test_images.py",), equivalent="Pillow's PngImageFile.text loads the image itself before it answers "
      "(tests/test_images.py checks a chunk after IDAT is read); the call guards older Pillows"),
    M("a JPEG taken for a run's PNG", IMAGES, 'if im.format != "PNG":', 'if im.format not in ("PNG", "JPEG"):',
      ("tests/test_infotext.py",)),
    M("a missing init image reported as unreadable", IMAGES,
      "    if not path.is_file():\n        raise VqclipError(missing(path, \"image file\"))",
      "    if False:\n        pass", ("tests/test_images.py",)),
    M("cover crops the top-left corner, not the centre", IMAGES,
      "left, top = (im.width - w) // 2, (im.height - h) // 2", "left, top = 0, 0", ("tests/test_images.py",)),
    M("cover fits inside instead of covering", IMAGES, "scale = max(w / im.width, h / im.height)",
      "scale = min(w / im.width, h / im.height)", ("tests/test_images.py",)),
    M("8-bit images truncated, not rounded", IMAGES, ".clamp(0, 1).mul(255).round().byte()",
      ".clamp(0, 1).mul(255).byte()",
      ("tests/test_images.py",)),
    M("a huge metadata chunk parsed", IMAGES, "if len(text) > MAX_METADATA:", "if False:", ("tests/test_infotext.py",)),
    # --- infotext.py
    M("'Steps done' written when every step was done", INFOTEXT,
      '"Steps done": steps_done if steps_done != cfg["steps"] else None', '"Steps done": steps_done',
      ("tests/test_infotext_fields.py",)),
    M("a CLIP's weight left out of its name", INFOTEXT,
      '(f" x{c[\'weight\']:g}" if c.get("weight") != 1 else "")', '""',
      ("tests/test_infotext_fields.py",)),
    M("file paths written whole (the user's folders in every PNG)", INFOTEXT,
      'return Path(path).name if path and ("/" in path or "\\\\" in path) else path', "return path",
      ("tests/test_infotext_fields.py",)),
    M("a last line of two pairs read as the pairs", INFOTEXT, "if len(_pairs(last)) < 3:",
      "if len(_pairs(last)) < 2:", ("tests/test_infotext_fields.py",)),
    M("a NUL byte kept in the chunk", INFOTEXT, '.replace("\\0", "")', "", ("tests/test_infotext_fields.py",)),
    M("every character tried as a pair's start (a long hostile chunk reads for hours)", INFOTEXT,
      'i = end if end > word and line[end:end + 1] != ":" else max(word, i + 1)', "i = i + 1",
      ("tests/test_infotext_fields.py",)),
    M("a run of key characters skipped though a ':' ends it (pairs lost)", INFOTEXT,
      'i = end if end > word and line[end:end + 1] != ":" else max(word, i + 1)',
      "i = end if end > word else max(word, i + 1)", ("tests/test_infotext_fields.py",)),
    M("a value with a colon not quoted", INFOTEXT, "re.search(r'[,:\"\\n]', text)", "re.search(r'[,\"\\n]', text)",
      ("tests/test_infotext.py",)),
    # --- video.py
    M("the audio not cut to the video's seconds", VIDEO, 'limit = ["-t", f"{seconds:.6f}"] if seconds else []',
      "limit = []", ("tests/test_video_audio.py",)),
    M("ffmpeg's error lines echoed as they are", VIDEO, "why = reason(RuntimeError(done.stderr), 200, whole=True)",
      "why = done.stderr.strip()[:200]", ("tests/test_video_audio.py",)),
    M("a GIF one pixel over its max side not shrunk", VIDEO, "if max_side and max(w, h) > max_side:",
      "if max_side and max(w, h) > max_side + 1:", ("tests/test_video_audio.py",)),
    M("GIF frames under 10 ms (browsers play them slow)", VIDEO, "return [max(10, b - a) for", "return [(b - a) for",
      ("tests/test_video.py",)),
    M("mp4 written at 30 fps whatever was asked", VIDEO, "is_batch=True, fps=fps,", "is_batch=True, fps=30,",
      ("tests/test_video.py",)),
    # --- grid.py
    M("row labels widen the sheet without bound", GRID, "left = min(MAX_ROW_LABEL, max(", "left = max(0, max(",
      ("tests/test_grid.py",)),
    M("cells as wide as the tile, not the caption", GRID, "x, y = self.left + col * (self.cell_w or self.tile_w),",
      "x, y = self.left + col * self.tile_w,", ("tests/test_grid.py",)),
    M("a run not made drawn white, not grey", GRID, "draw.rectangle((x, y, right - 1, lower - 1), fill=EMPTY)",
      "draw.rectangle((x, y, right - 1, lower - 1), fill=BACKGROUND)", ("tests/test_grid.py",)),
    M("every column label drawn over the first column", GRID, "x = layout.box(0, c)[0]\n        draw.text(",
      "x = layout.box(0, 0)[0]\n        draw.text(", ("tests/test_grid.py",)),
    M("every row label drawn beside the first row", GRID, "y = layout.box(r, 0)[1]", "y = layout.box(0, 0)[1]",
      ("tests/test_grid.py",)),
]
