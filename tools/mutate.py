"""Mutation check of the math: each mutation below breaks one formula or rule on purpose, in a scratch copy of the
package; the tests named beside it must then fail. A mutation they survive is a hole in the suite.

    python tools/mutate.py                 # all mutations; prints a markdown table, exit 1 if any survives
    python tools/mutate.py --only clamp    # those whose name contains 'clamp'
    python tools/mutate.py --list

Each mutation is (name, file, the exact text it replaces, the replacement, the test files to run). A text that is no
longer in its file is reported as stale (exit 2): update the table when the code moves, never drop a row silently.
Only a failing test counts as a catch: a pytest that cannot run the tests (an import error, a test that is not there)
is an error (exit 2), and so is an unmutated baseline whose tests do not pass (checked first; --no-baseline skips it).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Mutation:
    name: str
    path: str
    old: str
    new: str
    tests: tuple[str, ...]


M = Mutation
MUTATIONS = [
    # --- quantize: the clamp's gradient and the straight-through quantizer
    M("clamp keeps the gradient that pushes further out (the old inverted rule)", "vqclip/nets/quantize.py",
      "keep = grad * (x - x.clamp(ctx.lo, ctx.hi)) >= 0", "keep = grad * (x - x.clamp(ctx.lo, ctx.hi)) <= 0",
      ("tests/test_quantize.py",)),
    M("clamp passes every gradient", "vqclip/nets/quantize.py",
      "keep = grad * (x - x.clamp(ctx.lo, ctx.hi)) >= 0", "keep = torch.ones_like(grad, dtype=torch.bool)",
      ("tests/test_quantize.py",)),
    M("clamp blocks every out-of-range gradient", "vqclip/nets/quantize.py",
      "keep = grad * (x - x.clamp(ctx.lo, ctx.hi)) >= 0", "keep = (x >= ctx.lo) & (x <= ctx.hi)",
      ("tests/test_quantize.py",)),
    M("nearest code is the farthest", "vqclip/nets/quantize.py", "return d.argmin(1)", "return d.argmax(1)",
      ("tests/test_quantize.py",)),
    M("quantizer without the straight-through gradient", "vqclip/nets/quantize.py",
      "return z + (z_q - z).detach()", "return z_q + 0 * z", ("tests/test_quantize.py",)),
    M("decoded image not clamped", "vqclip/optim/objective.py", "return clamp_with_grad(image.float(), 0, 1)",
      "return image.float()", ("tests/test_perf_equivalence.py",)),
    # --- prompts: distance, loss, TV, syntax
    M("chord distance instead of the spherical one", "vqclip/optim/losses.py",
      "(x[:, None, :] - y[None, :, :]).norm(dim=-1).div(2).clamp(max=1).arcsin().pow(2).mul(2)",
      "(x[:, None, :] - y[None, :, :]).norm(dim=-1).pow(2)", ("tests/test_losses.py",)),
    M("prompt weights lose their sign", "vqclip/optim/losses.py", ".mean(0) * weights).sum()",
      ".mean(0) * weights.abs()).sum()", ("tests/test_losses.py",)),
    M("worst cutout instead of the mean", "vqclip/optim/losses.py", ".mean(0) * weights).sum()",
      ".amax(0) * weights).sum()", ("tests/test_losses.py",)),
    M("a stop never cuts the gradient", "vqclip/optim/losses.py",
      "dists = torch.where(dists * weights.sign() < stops, dists.detach(), dists)",
      "dists = torch.where(dists < stops, dists.detach(), dists)", ("tests/test_losses.py",)),
    M("tv without its vertical term", "vqclip/optim/losses.py", "return dx.pow(2).mean() + dy.pow(2).mean()",
      "return dx.pow(2).mean()", ("tests/test_losses.py",)),
    M("negative prompts pull", "vqclip/optim/prompts.py", "out.append(Prompt(p.text, -abs(p.weight), stop=p.stop))",
      "out.append(Prompt(p.text, abs(p.weight), stop=p.stop))", ("tests/test_prompts.py",)),
    # --- cutouts
    M("point-sampled cutouts instead of the area average", "vqclip/optim/cutouts.py",
      "area = inside.float() / (hi - lo)[..., None].float()", "area = (rel == lo[..., None]).float()",
      ("tests/test_cutouts.py",)),
    M("bilinear enlarging with its weights swapped", "vqclip/optim/cutouts.py",
      "lin = (rel == i0[..., None]) * (1 - frac)[..., None] + (rel == i1[..., None]) * frac[..., None]",
      "lin = (rel == i0[..., None]) * frac[..., None] + (rel == i1[..., None]) * (1 - frac)[..., None]",
      ("tests/test_cutouts.py",)),
    M("cut_pow ignored", "vqclip/optim/cutouts.py", "sizes = (r[:, 0] ** cut_pow *", "sizes = (r[:, 0] *",
      ("tests/test_cutouts.py",)),
    M("replayed views drop their augments", "vqclip/optim/cutouts.py",
      "batch = self.augment(batch, params=draw.augment)", "batch = batch",
      ("tests/test_cutouts.py",)),
    # --- schedules
    M("a wrong cosine LR curve", "vqclip/optim/schedules.py", "0.5 * (1 + math.cos(math.pi * t))",
      "0.5 * (1 + math.cos(math.pi * t / 2))", ("tests/test_loop.py",)),
    M("linear LR decays to zero", "vqclip/optim/schedules.py", "return lr * (1 - (1 - min_factor) * t)",
      "return lr * (1 - t)", ("tests/test_loop.py",)),
    M("story switches one step late", "vqclip/optim/schedules.py",
      "i = bisect.bisect_right(self._ats, step) - 1\n        if i < 0:\n            return list(self._rows[0])",
      "i = bisect.bisect_left(self._ats, step) - 1\n        if i < 0:\n            return list(self._rows[0])",
      ("tests/test_schedules.py",)),
    M("blend jumps halfway", "vqclip/optim/schedules.py",
      "t = (step - self._ats[i]) / (self._ats[i + 1] - self._ats[i])", "t = 0.5", ("tests/test_schedules.py",)),
    M("a keyframe with nothing to aim at is accepted", "vqclip/optim/schedules.py",
      "if max(self._rows[i], default=0.0) <= 0:", "if False:", ("tests/test_schedules.py",)),
    M("key-framed values not interpolated", "vqclip/optim/schedules.py",
      "return v0 + (v1 - v0) * (step - s0) / (s1 - s0)", "return v0", ("tests/test_schedules.py",)),
    # --- the loss assembly and the step
    M("the loss ignores the story's weight schedule", "vqclip/optim/objective.py",
      "weights = self.weights_at(step)\n        if self.guide is not None:",
      "weights = self.weights\n        if self.guide is not None:", ("tests/test_schedules.py",)),
    M("init term with its sign flipped", "vqclip/optim/objective.py",
      'parts["init"] = self.cfg.init.weight * F.mse_loss(z, z_init)',
      'parts["init"] = -self.cfg.init.weight * F.mse_loss(z, z_init)', ("tests/test_loop.py",)),
    M("tv weight ignored", "vqclip/optim/objective.py", 'parts["tv"] = self.cfg.tv_weight * tv_loss(image)',
      'parts["tv"] = tv_loss(image)', ("tests/test_loop.py", "tests/test_perf_equivalence.py")),
    M("z no longer clamped to the codebook's box", "vqclip/optim/state.py",
      "self.z.copy_(self.z.maximum(lo).minimum(hi))", "pass", ("tests/test_loop.py",)),
    M("the scheduled lr is not applied", "vqclip/optim/loop.py", "state.set_lr(lr)", "pass", ("tests/test_loop.py",)),
    M("two CLIPs of one name: one term replaces the other", "vqclip/optim/objective.py",
      'return [f"clip:{n}" if names.count(n) == 1 else f"clip:{n}#{i}" for i, n in enumerate(names)]',
      'return [f"clip:{n}" for n in names]', ("tests/test_loop.py",)),
    M("micro-batch gradient ignores the incoming gradient", "vqclip/optim/objective.py",
      "return grad * grad_out, None, None", "return grad, None, None", ("tests/test_loop.py",)),
    M("micro-batch chunks not weighted by their size", "vqclip/optim/objective.py",
      "part = self._score(clip, chunk, targets, weights) * (len(chunk) / len(leaf))",
      "part = self._score(clip, chunk, targets, weights)", ("tests/test_loop.py",)),
    M("across devices, the cutouts' gradient is not summed", "vqclip/optim/objective.py",
      "        torch.distributed.all_reduce(grad)\n", "", ("tests/test_devices.py",)),
    M("starts get 1/n of their gradient", "vqclip/optim/loop.py", "(loss * state.starts).backward()",
      "loss.backward()", ("tests/test_bestofn.py",)),
    M("image prompts skip the model's preprocessing", "vqclip/optim/objective.py",
      "rows.append(clip.embed_images([open_rgb(p.text)]))",
      "rows.append(clip.encode_image(__import__('vqclip.files.images').files.images.load_image(p.text, (clip.image_size,) * 2)))",
      ("tests/test_nets.py",)),
    # --- best of n
    M("best-of-n keeps the worst start", "vqclip/modes/bestofn.py",
      "best = sorted(range(len(scores)), key=scores.__getitem__)[c.rank]",
      "best = sorted(range(len(scores)), key=scores.__getitem__, reverse=True)[c.rank]", ("tests/test_bestofn.py",)),
    M("each start scored on views of its own", "vqclip/modes/bestofn.py",
      "    for k in range(len(images)):\n        score = 0.0",
      "    for k in range(len(images)):\n        draws = [views[clip.image_size].draw(1, h, w) if weight > 0 else None"
      " for clip, weight in judges]\n        score = 0.0", ("tests/test_bestofn.py",)),
    M("a start's score negated", "vqclip/modes/bestofn.py",
      "score += weight / total * prompt_loss(embeds.float(), target, weights).item()",
      "score -= weight / total * prompt_loss(embeds.float(), target, weights).item()", ("tests/test_bestofn.py",)),
    M("the kept start takes another start's Adam state", "vqclip/optim/state.py",
      "values[key] = v[start:start + 1].clone()", "values[key] = v[0:1].clone()", ("tests/test_bestofn.py",)),
    # --- zoom
    M("zoom no longer moves z_init", "vqclip/optim/state.py", "            self.z_init.copy_(z)\n", "",
      ("tests/test_zoom.py",)),
    M("zoom rotates the other way", "vqclip/modes/zoom.py", "rot_t = torch.tensor([[c, -s], [s, c]]",
      "rot_t = torch.tensor([[c, s], [-s, c]]", ("tests/test_zoom.py",)),
    M("zoom scales the other way", "vqclip/modes/zoom.py", "m = torch.diag(1 / d) @ rot_t @ torch.diag(d) / zoom",
      "m = torch.diag(1 / d) @ rot_t @ torch.diag(d) * zoom", ("tests/test_zoom.py",)),
    # --- the guide
    M("guide views not augmented", "vqclip/optim/guidance.py",
      "views = add_noise(self.augment(image.float().repeat_interleave(self.views, 0)), self.noise)",
      "views = add_noise(image.float().repeat_interleave(self.views, 0), self.noise)", ("tests/test_guide.py",)),
    M("guide aimed at the weakest prompt", "vqclip/optim/objective.py", "pulling = sorted(((-w, i)",
      "pulling = sorted(((w, i)", ("tests/test_guide.py",)),
    M("guide aimed once, never re-aimed by a story", "vqclip/optim/objective.py", "        if texts == self._aimed:\n",
      "        if self._aimed is not None:\n", ("tests/test_guide.py",)),
    M("guide aims at a pushed-away prompt", "vqclip/optim/objective.py", "if not p.image and w > 0))",
      "if not p.image and w != 0))", ("tests/test_guide.py",)),
    M("guide weight ignored", "vqclip/optim/objective.py", 'parts["guide"] = self.cfg.guide.weight * self.guide(',
      'parts["guide"] = self.guide(', ("tests/test_guide.py",)),
]


def apply(tree: Path, m: Mutation) -> None:
    path = tree / m.path
    text = path.read_text()
    if text.count(m.old) != 1:
        raise LookupError(f"{m.path}: the text of '{m.name}' occurs {text.count(m.old)} times (expected once)")
    path.write_text(text.replace(m.old, m.new))


def run(m: Mutation, timeout: float) -> tuple[str, str, float]:
    """('caught' | 'survived' | 'stale' | 'timeout' | 'error', the first failing test or the reason, seconds); a
    pytest that could not run the tests (exit 2-5: import error, no such test) is an error, never a catch."""
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        tree = Path(tmp)
        for part in ("vqclip", "tests", "benchmarks", "configs", "pyproject.toml"):
            src = ROOT / part
            (shutil.copytree if src.is_dir() else shutil.copy)(src, tree / part)
        try:
            if m.path:  # the baseline mutates nothing
                apply(tree, m)
        except LookupError as exc:
            return "stale", str(exc), 0.0
        env = {**os.environ, "PYTHONPATH": str(tree)}
        cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *m.tests]
        try:
            done = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return "timeout", f"over {timeout:.0f} s", time.perf_counter() - t0
    failed = [line.split(" ")[1] for line in done.stdout.splitlines() if line.startswith(("FAILED ", "ERROR "))]
    if done.returncode == 0:
        return "survived", "", time.perf_counter() - t0
    if done.returncode == 1 and failed:  # a test failed: only that counts as caught
        return "caught", failed[0], time.perf_counter() - t0
    last = (done.stdout + done.stderr).strip().splitlines()[-1:] or [""]
    return "error", f"pytest exit {done.returncode}: {last[0][:120]}", time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", default="", help="run the mutations whose name contains this text")
    p.add_argument("--list", action="store_true", help="list the mutations and exit")
    p.add_argument("--no-baseline", action="store_true", help="skip the run of the unmutated tests")
    p.add_argument("--timeout", type=float, default=600, help="seconds per mutation")
    args = p.parse_args(argv)
    chosen = [m for m in MUTATIONS if args.only in m.name]
    if args.list:
        for m in chosen:
            print(f"{m.name}  ({m.path}; {', '.join(m.tests)})")
        return 0
    if not args.no_baseline:  # a test that fails unmutated would make every mutation look caught
        state, detail, _ = run(Mutation("baseline", "", "", "", tuple(sorted({t for m in chosen for t in m.tests}))),
                               args.timeout * 2)
        if state != "survived":
            print(f"the unmutated tests do not pass ({state}: {detail}); fix them first", file=sys.stderr)
            return 2
    print("| mutation | file | result | caught by |\n|---|---|---|---|", flush=True)
    results = []
    for m in chosen:
        state, detail, seconds = run(m, args.timeout)
        results.append(state)
        print(f"| {m.name} | `{m.path}` | {state} | {f'`{detail}`' if detail else ''} |", flush=True)
    caught = results.count("caught")
    print(f"\n{caught} of {len(results)} caught; survived {results.count('survived')}, stale {results.count('stale')},"
          f" timed out {results.count('timeout')}, errors {results.count('error')}")
    if "stale" in results or "error" in results:
        return 2
    return 0 if caught == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
