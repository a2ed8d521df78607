"""Mutations of the page's steering (issue 39 item 4): the queue's Steering per run, its branches, the steer, pause,
resume and branch endpoints, the event stream's steers, and the gallery's branches under their parent."""

from ._table import M

QUEUE, ROUTES, SERVER, GALLERY = ("vqclip/runs/queue.py", "vqclip/ui/steering.py", "vqclip/ui/server.py",
                                  "vqclip/ui/gallery.py")
T_QUEUE, T_SERVER, T_GALLERY = ("tests/test_queue_steering.py",), ("tests/test_ui_steering.py",), \
    ("tests/test_ui_gallery_branches.py",)

MUTATIONS = [
    # --- the queue: which runs are steered, a Stop or close of a paused run, the end of a run, branches
    M("a batch's job is offered steering (its steers are never taken)", QUEUE,
      "return not isinstance(plan, Batch) and load(mode_name(plan)).steerable",
      "return load(mode_name(plan)).steerable", T_QUEUE),
    M("a run is not handed the Steering the page steers (steers accepted, never taken)", QUEUE,
      "run = self._run if job.steering is None else functools.partial(self._run, steering=job.steering)",
      "run = self._run", T_QUEUE + T_SERVER),
    M("Stop of a paused run never ends it (it waits for Continue)", QUEUE,
      "                    job.steering.resume()  # a paused run reaches the end of its step too\n",
      "                    pass\n", T_QUEUE),
    M("a job that failed before its run began still takes steers (kept, never applied)", QUEUE,
      "                job.steering.finish()  # a run that failed before it began", "                pass  #", T_QUEUE),
    M("a cancelled queued job still takes steers", QUEUE,
      "            if job.state in (QUEUED, BRANCHING):\n"
      "                job.state, job.ended = CANCELLED, time.time()\n"
      "                if job.steering is not None:\n                    job.steering.finish()",
      "            if job.state in (QUEUED, BRANCHING):\n"
      "                job.state, job.ended = CANCELLED, time.time()\n"
      "                if job.steering is not None:\n                    pass", T_QUEUE),
    M("a branch is queued before its parent has written its folder", QUEUE,
      "job = Job(f\"j{seq}\", seq, parent.plan, parent.device, prompt, BRANCHING,",
      "job = Job(f\"j{seq}\", seq, parent.plan, parent.device, prompt, QUEUED,", T_QUEUE),
    M("a branch cancelled while waiting is queued anyway once its folder is written", QUEUE,
      "            if job.state != BRANCHING:  # cancelled meanwhile", "            if False:  # cancelled meanwhile",
      T_QUEUE),
    M("a branch runs as a new run instead of resuming its folder", QUEUE,
      "        if job.resume is not None:  # a branch", "        if False:  # a branch", T_QUEUE),
    M("a branch's run is not steerable", QUEUE,
      "                                  steering=job.steering)\n            return job.resume",
      "                                  steering=None)\n            return job.resume", T_QUEUE),
    M("a branch its parent never took waits for ever", QUEUE,
      "if child.parent == job.id and child.state == BRANCHING and not child.branched.done():",
      "if False:", T_QUEUE),
    M("the prompt in effect ignores a steer taken at the current step", QUEUE,
      'if key in e and e["at"] <= self.step), default)', 'if key in e and e["at"] < self.step), default)', T_QUEUE),
    M("the loss curve has no marks for the story's keyframes", QUEUE, "keyframes=[k.at for k in first.story])",
      "keyframes=[])", T_QUEUE),
    M("the lr field shows the job's own lr after an lr steer", QUEUE, 'return self._now("lr", getattr(',
      'return (lambda key, default: default)("lr", getattr(', T_QUEUE),
    # --- the endpoints
    M("a steer to a finished run is accepted (and silently never applied)", ROUTES,
      "        if job.state in ENDED:\n            return fail(409", "        if False:\n            return fail(409",
      T_SERVER),
    M("a batch's job answers a steer with a 500", ROUTES,
      "        if job.steering is None:\n            return fail(409", "        if False:\n            return fail(409",
      T_SERVER),
    M("a steer key such as 'self' reaches the call as a keyword (a 500)", ROUTES,
      '            check_keys(data, "steer")\n', "", T_SERVER),
    M("a live steer's prompt may name a mask file of the server as its region", ROUTES,
      '        check_safe({"prompt": safe["prompt"]}, uploads)', "        pass", T_SERVER),
    M("a branch's changes skip the page's file rules", ROUTES,
      "child = queue.branch(job, stop, **page_change(data, uploads))", "child = queue.branch(job, stop, **data)",
      T_SERVER),
    M("a body over the cap is read and parsed", ROUTES, "data = await read_json(request, MAX_STEER, what",
      "data = await read_json(request, 1 << 40, what", T_SERVER),
    M("a JSON list as a steer's body is a 500", ROUTES, "        if not isinstance(data, dict):\n",
      "        if not isinstance(data, (dict, list)):\n", T_SERVER),
    M("a steer does not tell the watchers (the stream shows it a step late, a pause not at all)", ROUTES,
      "            job.steering.pause()\n        except VqclipError as exc:\n            return fail(409, str(exc))\n"
      "        queue.changed(job)\n",
      "            job.steering.pause()\n        except VqclipError as exc:\n            return fail(409, str(exc))\n",
      T_SERVER, equivalent="the stream also watches the steering's paused flag itself (`now` in server.py), so a "
                           "pause shows at the next tick without the bump; the bump only spares a wait of 0.1 s"),
    M("branch's stop flag taken from any truthy value", ROUTES, "        if not isinstance(stop, bool):\n",
      "        if False:\n", T_SERVER),
    M("resume of an ended job answers 200", ROUTES,
      '        job = steered(job_id, "resume")\n        if isinstance(job, JSONResponse):',
      '        job = queue.get(job_id) or steered(job_id, "resume")\n        if isinstance(job, JSONResponse):',
      T_SERVER),
    # --- the event stream's steers
    M("the event stream sends each steer again with every event", SERVER,
      "                        if counted[key] > sent_steers[key]:", "                        if True:", T_SERVER),
    M("the event stream sends no steers", SERVER,
      "                            yield f\"data: {json.dumps({'steer': steer})}\\n\\n\"\n", "", T_SERVER),
    # --- the gallery's branches
    M("branches are listed at the top beside their parent", GALLERY, "            run[\"branches\"] = kids\n",
      "            pass\n", T_GALLERY),
    M("a branch whose parent is gone is hidden", GALLERY,
      'top, placed = [r for r in runs if r.get("parent") not in names or r["parent"] == r["name"]], set()',
      'top, placed = [r for r in runs if not r.get("parent")], set()', T_GALLERY),
    M("a loop of parents hides both runs", GALLERY, "    return top + [r for r in runs if r[\"name\"] not in placed]",
      "    return top", T_GALLERY),
    M("branches are in listing order, not by the step they branched at", GALLERY,
      'key=lambda c: (c["branch_step"] or 0, c["name"]))', 'key=lambda c: 0)', T_GALLERY),
    M("a branch.step of true is shown as step 1", GALLERY,
      "branch_step=step if isinstance(step, int) and not isinstance(step, bool) else None)",
      "branch_step=step if isinstance(step, int) else None)", T_GALLERY),
]
