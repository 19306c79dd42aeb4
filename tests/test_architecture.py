"""The shape of the code base: modules of one concern (under 450 lines, benchmarks/ and tests/ included), no import
cycles in zoo/ or train/ (imports inside functions included), and a light ``import zoo`` (no plotting library)."""
import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("zoo", "train")
MAX_LINES = 450


def _modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


MODULES = _modules()
# the line limit also holds for the benchmark scripts and the tests (not packages: by file)
SIZED = {**MODULES, **{str(p.relative_to(ROOT)): p for folder in ("benchmarks", "tests")
                       for p in sorted((ROOT / folder).rglob("*.py"))}}


def _resolve(name: str) -> str | None:
    """The project module a dotted import name refers to (``zoo.layers.Ops`` -> ``zoo.layers``)."""
    parts = name.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in MODULES:
            return candidate
        parts.pop()
    return None


def _imports(module: str, path: Path) -> set[str]:
    """Project modules imported anywhere in ``module`` (top level and inside functions)."""
    tree = ast.parse(path.read_text())
    is_pkg = path.name == "__init__.py"
    out = set()
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if is_pkg else module.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            names = [f"{prefix}.{a.name}" for a in node.names] + [prefix]
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "import_module" and node.args \
                and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
            names = [node.args[0].value]
        for n in names:
            target = _resolve(n)
            if target and target != module and not module.startswith(target + "."):
                # importing a package's own parent package (``from zoo import x`` inside zoo.y) counts as
                # importing zoo.x, which _resolve already found; the parent itself is not an edge.
                out.add(target)
    return out


def _graph() -> dict[str, set[str]]:
    return {m: _imports(m, p) for m, p in MODULES.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10_000)
    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles():
    cycles = _cycles(_graph())
    assert not cycles, "import cycles (imports inside functions count): " + "; ".join(" <-> ".join(c) for c in cycles)


@pytest.mark.parametrize("module", sorted(SIZED))
def test_module_is_of_one_concern(module):
    n = len(SIZED[module].read_text().splitlines())
    assert n <= MAX_LINES, f"{SIZED[module].relative_to(ROOT)} has {n} lines (at most {MAX_LINES})"


@pytest.mark.integration  # a fresh interpreter (subprocess)
def test_import_zoo_is_light():
    code = ("import sys, zoo; heavy = [m for m in ('matplotlib', 'PIL', 'tensorflow', 'tensorflow_datasets', "
            "'orbax', 'grain', 'optax', 'train', 'zoo.inspect', 'zoo.convert', 'zoo.weights', 'zoo.bundle', 'zoo.export', "
            "'urllib.request', 'jax2onnx', 'onnx') if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


@pytest.mark.integration  # a fresh interpreter (subprocess)
def test_analyses_and_conversion_load_on_first_use():
    code = ("import sys, zoo; from zoo import inspect as zi; assert zoo.inspect is zi and callable(zi.grad_cam); "
            "assert 'zoo.inspect.plots' not in sys.modules; assert callable(zi.plot_grid) and callable(zi.to_display); "
            "assert callable(zoo.convert.from_torchvision); print(sorted(m for m in ('matplotlib',) if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stdout + out.stderr
