"""Mutations of what a run records for its report (vqclip/runs/losslog.py), the report itself (vqclip/report/), the
`vqclip report` command and the page's serving of reports: what a user would notice if it broke."""

from ._table import M

LOG = "vqclip/runs/losslog.py"
READ = "vqclip/report/read.py"
PLOTS = "vqclip/report/plots.py"
PAGE = "vqclip/report/page.py"
BATCH = "vqclip/report/batchpage.py"
T_LOG = ("tests/test_losslog.py",)
T_REPORT = ("tests/test_report.py",)
T_BATCH = ("tests/test_batchpage.py",)
T_GALLERY = ("tests/test_gallery_report.py",)

MUTATIONS = [
    # --- losslog.py: every step once, per term, written at the saves, continued by a resume
    M("losses.csv written a step after each saved frame (a crash loses the frame's own row)", LOG,
      "at_frame = self.frames > 0 and event.step % self.frames == 0",
      "at_frame = self.frames > 0 and (event.step + 1) % self.frames == 0", T_LOG),
    M("a resume keeps the row of its own first step and writes it again", LOG, 'if r["step"] < start]',
      'if r["step"] <= start]', T_LOG),
    M("a term that appears mid-run (a steered guide) gets no column", LOG,
      "self.terms += [k for k in dict.fromkeys(names) if k not in self.terms]",
      "self.terms = self.terms or list(dict.fromkeys(names))", T_LOG),
    M("a term that appears mid-run is appended under the old header (its column has no name)", LOG,
      "if self.written != self.terms:", "if self.written is None:", T_LOG),
    M("the terms' numbers read from the device land in the wrong cells", LOG,
      "return torch.stack(values).float().tolist()", "return torch.stack(values).float().tolist()[::-1]", T_LOG),
    M("the total column is the largest term, not their sum", LOG, "repr(sum(terms.values()))",
      "repr(max(terms.values()))", T_LOG),
    M("best-of-n's trial steps are written as the run's curve", LOG, "if event.trial or event.frame is not None:",
      "if event.frame is not None:", T_LOG),
    M("a resumed part of run.json says it began at step 0", LOG, '"from_step": first,', '"from_step": 0,', T_LOG),
    M("a resume adds its part to run.json beside the part it replaces", LOG,
      'and p["from_step"] < part["from_step"]]', 'and p["from_step"] <= part["from_step"]]', T_LOG),
    M("peak CUDA memory in millions of bytes, labelled MB", LOG, "torch.cuda.max_memory_allocated(device) / 2**20",
      "torch.cuda.max_memory_allocated(device) / 1e6", T_LOG),
    # --- the run's end (pipeline.py): the last rows and the report
    M("the steps after the last saved frame are not written", "vqclip/runs/pipeline.py",
      "        losses.flush()\n", "", T_REPORT),
    M("--no-report still writes report.html", "vqclip/runs/pipeline.py", "        if cfg.output.report:\n",
      "        if True:\n", T_REPORT),
    M("a batch with output.report off still writes batch.html; on, none", "vqclip/runs/batch.py",
      "    if batch.members[0].cfg.output.report:", "    if not batch.members[0].cfg.output.report:", T_BATCH),
    # --- read.py: what the report is made from
    M("steers are not marked on the loss curve", READ, 'for kind in ("story", "steer"):', 'for kind in ("story",):',
      T_REPORT),
    M("a run folder without losses.csv is not a run (old folders get no report)", READ,
      "return folder.is_dir() and any(", "return folder.is_dir() and all(", T_REPORT),
    M("a broken scores.json stops the report instead of being said and left out", READ,
      '    except VqclipError as exc:\n        log.warning("%s", exc)\n        return None',
      "    except OSError:\n        return None", T_REPORT),
    M("scores.json frames kept in file order, not by step", READ,
      'sorted(data["frames"], key=lambda f: f["step"])}', 'data["frames"]}',
      T_REPORT),
    M("a last line a kill cut short is read as a row (a number cut to fewer digits)", READ,
      'text = text[:text.rfind("\\n") + 1]', "text = text", T_REPORT),
    M("a row cut mid-write stops the reading (rows after it lost)", READ,
      "        except (ValueError, IndexError):\n            continue", "        except (ValueError, IndexError):\n"
      "            break", T_REPORT),
    # --- plots.py
    M("the loss plot draws the terms but not their total", PLOTS, 'for name in ["total", *terms]:',
      "for name in terms:", T_REPORT),
    M("the loss plot marks no steer or keyframe with a line", PLOTS,
      '        ax.axvline(step, color="grey", linestyle="--", linewidth=0.8)\n', "", T_REPORT),
    M("the judge's line shows the guide's numbers", PLOTS, 'ax.plot(steps, [f["judge"] for f in frames]',
      'ax.plot(steps, [f.get("guide") or 0 for f in frames]', T_REPORT),
    M("without matplotlib `vqclip report` crashes instead of one line", PLOTS,
      'if importlib.util.find_spec("matplotlib") is None:', "if False:", T_REPORT),
    # --- page.py
    M("a URL in the prompt appears as a network reference in the page", PAGE, '.replace("://", ":&#47;&#47;")', "",
      T_REPORT),
    M("the job and prompt go into the page unescaped (a <script> in a prompt runs)", PAGE,
      "return html.escape(str(text))", "return str(text)", T_REPORT),
    M("the strip of frames skips the last frame", PAGE, "round(i * (len(frames) - 1) / (count - 1))",
      "round(i * (len(frames) - 1) / count)", T_REPORT),
    M("a remade report keeps a judge plot the run no longer has scores for", PAGE,
      "            (plots / name).unlink(missing_ok=True)", "            pass", T_REPORT),
    M("`vqclip report` says nothing of what is missing", PAGE, "    if not quiet:\n", "    if quiet:\n", T_REPORT),
    M("the judge section shows no scores table", PAGE, "for f in s[\"frames\"])", "for f in s[\"frames\"][:0])",
      T_REPORT),
    # --- batchpage.py
    M("a run's judge score is its first frame's, not the image it ended with", BATCH,
      'scores["frames"][-1]["judge"]', 'scores["frames"][0]["judge"]', T_BATCH),
    M("runs ranked by the judge although some have no scores", BATCH, 'all(r["judge"] is not None for r in runs)',
      'any(r["judge"] is not None for r in runs)', T_BATCH),
    M("the judge's ranking puts the worst first", BATCH, 'key=lambda r: -r["score"]', 'key=lambda r: r["score"]',
      T_BATCH),
    M("a run with neither scores nor losses ranks first", BATCH, 'key=lambda r: (r["score"] is None,',
      'key=lambda r: (r["score"] is not None,', T_BATCH),
    M("a sweep value's mean is its best run", BATCH, "(v, sum(s) / len(s), len(s))", "(v, max(s), len(s))", T_BATCH),
    M("`vqclip report` of a batch folder makes a run report of it", "vqclip/cli/report.py",
      "        if (folder / BATCH_RECORD).is_file():\n            print(write_batch_page(folder))",
      "        if False:\n            print(write_batch_page(folder))", T_BATCH),
    # --- the page: the report's files, served and no other HTML
    M("any .html in the outputs folder is served", "vqclip/ui/gallery.py", 'if path.name in PAGES and kind == "file":',
      'if path.suffix.lower() == ".html" and kind == "file":', T_GALLERY),
    M("the run view lists no report plots", "vqclip/ui/gallery.py", "    if plots:\n        out[\"plots\"]",
      "    if False:\n        out[\"plots\"]", T_GALLERY),
    M("a served report may run script (no policy)", "vqclip/ui/server.py",
      '"Content-Security-Policy": FILES_POLICY})', "})", T_GALLERY),
]
MUTATIONS += [
    M("`vqclip report --quiet` still lists what is missing, and without it nothing", "vqclip/cli/report.py",
      "write_report(folder, quiet=args.quiet)", "write_report(folder, quiet=not args.quiet)", T_REPORT),
    M("`vqclip report A B` writes A's report before finding that B is not a run", "vqclip/cli/report.py",
      "            read_run(folder)  #", "            pass  #", T_REPORT),
]
