"""Mutations of what a newcomer meets (issue 35): the page's bounded checks and its stop at Ctrl-C, a run's notes on
the page, errors named as the page names its fields, re-running a run's job.yaml, `vqclip run --out`, --help's preset
defaults, the offline message, the search index's place and the models table."""

from ._table import M

UI_STOP = ("tests/test_ui_bounded.py",)

MUTATIONS = [
    # --- the page's checks: bounded in time, a few at a time, in the caller's environment
    M("a runaway check is waited for 30 times longer than its bound", "vqclip/ui/bounded.py",
      "return self.answers.get(timeout=seconds)", "return self.answers.get(timeout=seconds * 30)", UI_STOP),
    M("a checking process that ran over its time is kept for the next check", "vqclip/ui/bounded.py",
      "keep = answer is not None and not self._closed", "keep = not self._closed", UI_STOP),
    M("a check waits without end for a free checking process instead of being answered busy",
      "vqclip/ui/bounded.py", "if not self._slots.acquire(timeout=self.wait):",
      "if not self._slots.acquire(timeout=None):", UI_STOP),
    M("a check runs in the environment its process started with, not the caller's", "vqclip/ui/bounded.py",
      "    os.environ.clear()\n    os.environ.update(env)\n", "", UI_STOP),
    M("a check runs in its process's folder, not the caller's", "vqclip/ui/bounded.py", "    os.chdir(cwd)\n", "",
      UI_STOP),
    M("the page's event streams go on after Ctrl-C until uvicorn cancels them", "vqclip/ui/server.py",
      "while not stopping.is_set():  # the server is stopping", "while True:  # the server is stopping", UI_STOP),
    M("Ctrl-C does not tell the page's app to stop", "vqclip/cli/ui.py",
      "super().handle_exit(sig, frame)\n            self.on_exit()", "super().handle_exit(sig, frame)", UI_STOP),
    M("nested JSON past the parser is a server error", "vqclip/ui/bodies.py",
      'except RecursionError:\n        return fail(400, f"{what}: nested too deeply to be a {what}")',
      'except ValueError:\n        return fail(400, f"{what}: nested too deeply to be a {what}")', UI_STOP),
    M("a run's job comes back unencoded, to be made JSON by the server outside the bound", "vqclip/ui/gallery.py",
      "text = json.dumps(edit_job(outputs, folder))", "text = json.dumps([])\n    return edit_job(outputs, folder)",
      (*UI_STOP, "tests/test_gallery_json.py")),
    # --- a run's notes on the page
    M("notes of other threads land on the running job", "vqclip/runs/queue.py",
      "if record.thread != self.thread or record.name", "if record.name", ("tests/test_ui_notes.py",)),
    M("the vqclip logger is left at INFO after a job", "vqclip/runs/queue.py",
      "                if self._listening == 0:\n                    logger.setLevel(self._level)",
      "                pass", ("tests/test_ui_notes.py",)),
    M("the notes of a job's check are dropped", "vqclip/runs/queue.py", "notes=list(notes)[:MAX_NOTES],",
      "notes=[],", ("tests/test_ui_notes.py",)),
    M("a run's notes are not kept while it runs", "vqclip/runs/queue.py",
      "                with self._notes(job):\n                    job.dir, stopped = self._execute(job)",
      "                job.dir, stopped = self._execute(job)", ("tests/test_ui_notes.py",)),
    # --- errors as the page names its fields
    M("the page shows CLI flags in errors", "vqclip/ui/jobs.py",
      'return re.sub(r"(?<![\\w-])--[a-z][\\w-]*", lambda m: flags.get(m.group(0), m.group(0)), text)',
      "return text", ("tests/test_ui_notes.py",)),
    M("the YAML box's errors name labels instead of keys", "vqclip/ui/server.py", 'labels="yaml" not in request',
      "labels=True", ("tests/test_ui_notes.py",)),
    M("the page's errors keep the job: source", "vqclip/ui/jobs.py",
      'text = re.sub(r"^(job|command line)( [^:]*)?: ", "", message)\n    names =',
      "text = message\n    names =", ("tests/test_ui_notes.py",)),
    M("a field's label is its key's words even for n", "vqclip/ui/options.py",
      'return f"number of {section[-1]}" if leaf == "n" else', 'return', ("tests/test_ui_notes.py",)),
    M("nothing to aim at names no field", "vqclip/optim/prompts.py", '"prompt: nothing to aim at: give',
      '"nothing to aim at: give', ("tests/test_ui_notes.py",)),
    # --- re-running a run, vqclip run --out
    M("a run's own job.yaml keeps its output.dir", "vqclip/runs/jobs.py",
      "if not any((path.parent / marker).exists() for marker in (FINAL_FILE, FRAMES_DIR, STATE_FILE)):",
      "if True:", ("tests/test_rerun.py",)),
    M("any job file beside a run loses its output.dir", "vqclip/runs/jobs.py",
      "if path.name != JOB_FILE or not isinstance(output, dict)", "if not isinstance(output, dict)",
      ("tests/test_rerun.py",)),
    M("--out of several jobs names one folder for all", "vqclip/runs/plan.py",
      '"dir": str(out if n == 1 else Path(out) / f"job-{i + 1}")', '"dir": str(out)', ("tests/test_rerun.py",)),
    # --- --help says which defaults apply
    M("--help lists a preset's default equal to the listed one", "vqclip/cli/options.py",
      ".items() if v != o.default}", ".items()}", ("tests/test_help_presets.py",)),
    M("--help without the presets' defaults", "vqclip/cli/options.py", '"help": describe(o, helps, presets)}',
      '"help": describe(o, helps)}', ("tests/test_help_presets.py",)),
    # --- offline
    M("\"downloading\" said before any host answered, never after", "vqclip/models/download.py",
      "            if not said:\n", "            if said:\n", ("tests/test_offline.py",)),
    M("the offline error does not say what runs without a download", "vqclip/models/download.py",
      "{f'{self.instead}; or ' if self.instead else ''}", "", ("tests/test_offline.py",)),
    M("a job on mini with another CLIP is told to use mini", "vqclip/models/resolve.py",
      "if built_in is None or model == built_in:", "if built_in is None:", ("tests/test_offline.py",)),
    M("the CLIP path does not say where downloads go", "vqclip/models/clipweights.py",
      'note = "" if cache == own_clip_folder(home_dir) else', 'note = "" if True else', ("tests/test_offline.py",)),
    # --- the search index's place
    M("the search index goes into the image folder again", "vqclip/tools/search.py",
      "self.path = Path(index_path) if index_path else index_file(self.folder)",
      "self.path = Path(index_path) if index_path else self.folder / INDEX_NAME",
      ("tests/test_search_index.py", "tests/test_clipjobs.py")),
    M("an index left in the folder by an earlier version is not read", "vqclip/tools/search.py",
      "path = self.path if self.path.exists() or self.legacy is None", "path = self.path if True or self.legacy is None",
      ("tests/test_search_index.py",)),
    M("two folders of the same name share one index", "vqclip/tools/search.py",
      'key = hashlib.sha256(str(folder).encode("utf-8", "surrogateescape"))',
      'key = hashlib.sha256(folder.name.encode("utf-8", "surrogateescape"))', ("tests/test_search_index.py",)),
    # --- vqclip models
    M("what a preset is is cut after the first line", "vqclip/cli/models.py",
      "lines.extend(\" \" * (len(head) + 2) + part for part in parts[1:])", "pass",
      ("tests/test_models_table.py",)),
]
