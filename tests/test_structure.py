"""The layout's rules: no import cycle, the engine imports nothing above it, small rooms, light imports, no test imports another."""

import ast
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "stylizer"
# What the engine may import: itself and the foundation below it (settings, errors, pictures, prompts, the request).
BELOW_THE_ENGINE = ("stylizer.engine", "stylizer.config", "stylizer.errors", "stylizer.images", "stylizer.prompts", "stylizer.request")
MAX_FUNCTION_LINES = 60
MAX_MODULE_LINES = 400
# Modules that need no torch, and so must not import it (the command lines' help, the app's ZeroGPU check, the page's data).
TORCH_FREE = (
    "stylizer",
    "stylizer.config",
    "stylizer.errors",
    "stylizer.images",
    "stylizer.request",
    "stylizer.loading",
    "stylizer.loading.presets",
    "stylizer.serving.deployment",
    "stylizer.serving.jobs",
    "stylizer.cli",
    "stylizer.cli.options",
    "stylizer.cli.stylize",
    "stylizer.cli.batch",
    "app",
)


def module_name(path: Path) -> tuple[str, bool]:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    package = parts[-1] == "__init__"
    return ".".join(parts[:-1] if package else parts), package


def package_imports() -> dict[str, set[str]]:
    """Every module of the package and the package modules it imports: module level, TYPE_CHECKING and function bodies alike."""
    modules = {module_name(path)[0]: path for path in PACKAGE.rglob("*.py")}
    edges: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        _, package = module_name(path)
        base = name.split(".") if package else name.split(".")[:-1]
        for node in ast.walk(ast.parse(path.read_text())):
            targets = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                here = base[: len(base) - node.level + 1] if node.level else []
                target = ".".join(here + ([node.module] if node.module else []))
                targets = [f"{target}.{alias.name}" if f"{target}.{alias.name}" in modules else target for alias in node.names]
            for target in targets:
                while target not in modules and "." in target:
                    target = target.rsplit(".", 1)[0]
                if target in modules and target != name:
                    edges[name].add(target)
    return edges


def cycles(edges: dict[str, set[str]]) -> list[set[str]]:
    """The strongly connected components with more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in edges[node]:
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(component)

    sys.setrecursionlimit(10_000)
    for node in edges:
        if node not in index:
            visit(node)
    return found


def test_there_is_no_import_cycle_in_the_package():
    edges = package_imports()
    assert len(edges) > 50  # the walk saw the package
    assert cycles(edges) == []


def test_the_cycle_check_finds_a_planted_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [{"a", "b", "c"}]


def test_the_engine_imports_nothing_above_it():
    for name, imported in package_imports().items():
        if name.startswith("stylizer.engine"):
            above = sorted(target for target in imported if not target.startswith(BELOW_THE_ENGINE))
            assert not above, f"{name} imports {above}"


def source_files() -> list[Path]:
    return [*PACKAGE.rglob("*.py"), ROOT / "app.py", *(ROOT / "bench").glob("*.py")]


def test_no_function_is_over_60_lines_and_no_module_over_400():
    long_functions, long_modules = [], []
    for path in source_files():
        text = path.read_text()
        if len(text.splitlines()) > MAX_MODULE_LINES:
            long_modules.append(path.relative_to(ROOT).as_posix())
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES:
                long_functions.append(f"{path.relative_to(ROOT).as_posix()}:{node.lineno} {node.name}")
    assert long_modules == [] and long_functions == []


def test_modules_that_need_no_torch_load_none():
    code = f"import importlib, sys\nfor name in {TORCH_FREE!r}:\n    importlib.import_module(name)\nprint(sorted(m for m in ('torch', 'diffusers', 'open_clip', 'gradio') if m in sys.modules))"
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "[]"


def test_the_package_front_file_loads_its_names_on_first_use():
    code = "import sys, stylizer; assert 'torch' not in sys.modules; stylizer.stylize; assert 'torch' in sys.modules; print(sorted(stylizer.__all__))"
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "check_request" in proc.stdout and "stylize" in proc.stdout


def test_no_test_module_imports_another():
    for path in (ROOT / "tests").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                assert not node.module.split(".")[-1].startswith("test_"), f"{path.name} imports {node.module}"
            if isinstance(node, ast.Import):
                assert not any(alias.name.split(".")[-1].startswith("test_") for alias in node.names), path.name


def layout_block() -> str:
    text = (ROOT / "README.md").read_text()
    section = text[text.index("\n## Project layout\n") :]
    return section.split("```\n", 2)[1]


def test_readmes_project_layout_names_every_module_and_nothing_else():
    """Each stylizer module is named by README's layout, as a file or within its folder's line; every path named exists."""
    block = layout_block()
    named_paths = set(re.findall(r"^([\w./-]+)", block, flags=re.M))
    assert all((ROOT / path).exists() for path in named_paths), sorted(p for p in named_paths if not (ROOT / p).exists())
    for path in PACKAGE.rglob("*.py"):
        relative = path.relative_to(ROOT)
        folder = f"{relative.parent.as_posix()}/"
        if relative.as_posix() in named_paths or path.name == "__main__.py":
            continue
        if folder in named_paths:
            entry = block[block.index(folder) :].split("\nstylizer/", 1)[0].split("\nbench/", 1)[0]
            assert path.stem in entry or path.name == "__init__.py", f"README's layout does not mention {relative}"
        else:
            assert path.name.startswith("_"), f"README's layout has no line for {relative}"
