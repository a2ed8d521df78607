"""The package's layers: every import of a vqclip module (at module level or inside a function) goes to the same
layer or a lower one, there is no import cycle, function-level imports say why they are there, and the config and
the command line's --help import no torch."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "vqclip"

# Longest prefix wins. Layer 1 also holds the names the config checks against (prompt syntax, schedules, optimisers,
# augments, init kinds, CLIP forms, devices and precisions, memory modes): torch-free modules beside the code that
# implements them.
LAYERS = {
    "vqclip._version": 0, "vqclip.errors": 0, "vqclip.files": 0, "vqclip.mini": 0,
    "vqclip.config": 1, "vqclip.optim.prompts": 1, "vqclip.optim.schedules": 1, "vqclip.optim.optimizers": 1,
    "vqclip.optim.augments": 1, "vqclip.optim.inits": 1, "vqclip.models.spec": 1, "vqclip.nets.device": 1,
    "vqclip.nets.memory": 1, "vqclip.terms.registry": 1, "vqclip.terms.colors": 1, "vqclip.modes.registry": 1,
    "vqclip.modes.rules": 1, "vqclip.draw.registry": 1, "vqclip.optim.regions": 1, "vqclip.optim.steer": 1,
    "vqclip.models": 2,
    "vqclip.nets": 3,
    "vqclip.optim": 4, "vqclip.terms": 4, "vqclip.draw": 4,
    "vqclip.modes": 5,
    "vqclip.runs": 6, "vqclip.report": 6,
    "vqclip.api": 7, "vqclip.cli": 7, "vqclip.tools": 7, "vqclip.measure": 7, "vqclip.ui": 7, "vqclip.__main__": 7,
    "vqclip": 8, "vqclip.mini.train": 8, "vqclip.train": 8, "vqclip.cli.train": 8, "vqclip.cli.trainvqgan": 8,  # the package's lazy face (vqclip.Pipeline), and training: nothing imports them
}
TORCH_FREE_LAYERS = 1  # modules up to this layer import no torch, kornia, open_clip or taming at module level
HEAVY = ("torch", "kornia", "open_clip", "taming", "torchvision")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def layer(module: str) -> int:
    best = max((k for k in LAYERS if module == k or module.startswith(k + ".")), key=len)
    return LAYERS[best]


def imports(module: str) -> list[tuple[str, int, bool, str]]:
    """(imported module, line, inside a function?, the source line) of every import in a module."""
    path = MODULES[module]
    source = path.read_text()
    lines = source.splitlines()
    tree = ast.parse(source)
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = []

    def visit(node, in_function):
        for child in ast.iter_child_nodes(node):
            inner = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            if isinstance(child, ast.Import):
                for alias in child.names:
                    found.append((alias.name, child.lineno, in_function, lines[child.lineno - 1]))
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = package.split(".")
                    base = base[:len(base) - child.level + 1]
                    target = ".".join(base + ([child.module] if child.module else []))
                else:
                    target = child.module or ""
                for alias in child.names:  # `from pkg import submodule` depends on the submodule
                    sub = f"{target}.{alias.name}"
                    found.append((sub if sub in MODULES else target, child.lineno, in_function,
                                  lines[child.lineno - 1]))
            visit(child, inner)

    visit(tree, False)
    return found


def graph() -> dict[str, set[str]]:
    return {m: {t for t, *_ in imports(m) if t in MODULES and t != m} for m in MODULES}


def test_every_module_has_a_layer():
    assert all(layer(m) >= 0 for m in MODULES)
    assert {"vqclip.optim.loop", "vqclip.runs.pipeline", "vqclip.modes.still", "vqclip.api"} <= set(MODULES)


def test_no_import_goes_up_a_layer():
    wrong = [f"{m} (layer {layer(m)}) imports {t} (layer {layer(t)}) at line {n}"
             for m in MODULES for t, n, *_ in imports(m) if t in MODULES and layer(t) > layer(m)]
    assert not wrong, "\n".join(wrong)


def test_no_import_cycle():
    g, cycles = graph(), []
    index, low, stack, on, counter = {}, {}, [], set(), [0]

    def strongconnect(v):  # Tarjan's strongly connected components
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in g[v]:
            if w not in index:
                strongconnect(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    sys.setrecursionlimit(10000)
    for v in g:
        if v not in index:
            strongconnect(v)
    assert not cycles, cycles


def test_function_level_imports_say_why():
    """An import inside a function keeps --help fast or torch out of the config; its line (or the first of its
    group) says so in a comment."""
    silent = []
    for m in MODULES:
        previous = None
        for t, n, in_function, text in imports(m):
            if in_function and (t in MODULES or t.split(".")[0] in HEAVY + ("tqdm",)):
                grouped = previous is not None and previous[0] in (n - 1, n) and previous[1]
                if "#" not in text and not grouped:
                    silent.append(f"{m}:{n}: {text.strip()}")
                previous = (n, "#" in text or grouped)
            else:
                previous = None
    assert not silent, "\n".join(silent)


def test_the_lower_layers_import_no_torch_at_module_level():
    heavy = [f"{m}: {text.strip()}" for m in MODULES if layer(m) <= TORCH_FREE_LAYERS
             for t, n, in_function, text in imports(m) if not in_function and t.split(".")[0] in HEAVY]
    assert not heavy, "\n".join(heavy)


def test_no_run_imports_the_training_code():
    users = [m for m in MODULES if not m.startswith("vqclip.mini.train")
             and any(t.startswith("vqclip.mini.train") for t, *_ in imports(m))]
    assert not users


@pytest.mark.parametrize("code", ["import vqclip, vqclip.config, vqclip.cli; vqclip.cli.build_parser()",
                                  "from vqclip.config import merge_layers; merge_layers([('t', {'prompt': 'x'})])"])
def test_the_config_and_help_need_no_torch(code):
    done = subprocess.run([sys.executable, "-c", f"import sys; {code}; print('torch' in sys.modules)"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip().splitlines()[-1] == "False", done.stderr
