"""The benchmarks stay runnable: each has a `--tiny` mode, ends on the shared ratio line, and
.ci/run runs every one of them tiny. Read from the sources only: running them is CI's job
(pytest's time budget has no room for them)."""
import ast
import fnmatch
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"


def benches() -> list[Path]:
    return sorted(p for p in BENCH.glob("*.py") if not p.name.startswith("_"))


def calls(tree: ast.AST) -> list[ast.Call]:
    return [n for n in ast.walk(tree) if isinstance(n, ast.Call)]


def name(call: ast.Call) -> str:
    f = call.func
    return f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""


def has_tiny(tree: ast.AST) -> bool:
    """`ap.add_argument("--tiny", ...)`, or `add_tiny(ap)` from bench/_common.py."""
    return any(name(c) == "add_tiny" or (name(c) == "add_argument" and any(
        isinstance(a, ast.Constant) and a.value == "--tiny" for a in c.args)) for c in calls(tree))


def test_every_bench_has_a_tiny_mode_and_a_ratio_line():
    assert len(benches()) >= 6
    common = ast.parse((BENCH / "_common.py").read_text())
    assert has_tiny(common)  # add_tiny itself adds the flag
    for path in benches():
        tree = ast.parse(path.read_text(), str(path))
        assert has_tiny(tree), f"{path.name}: no --tiny option"
        assert any(name(c) == "ratio" for c in calls(tree)), f"{path.name}: no closing ratio(...)"


def test_ci_runs_every_bench_tiny_and_checks_the_ratio_line():
    ci = (ROOT / ".ci" / "run").read_text()
    loop = re.search(r"^for (\w+) in (bench/\S+); do$(.*?)^done$", ci, re.M | re.S)
    assert loop, ".ci/run has no loop over bench/"
    var, pattern, body = loop.groups()
    ran = {p.name for p in BENCH.glob("*.py") if fnmatch.fnmatch(f"bench/{p.name}", pattern)}
    assert ran == {p.name for p in benches()}
    assert f'"${var}" --tiny' in body
    marker = re.search(r'RATIO = "([^"]+)"', (BENCH / "_common.py").read_text()).group(1)
    assert f'"{marker}"*' in body  # the closing line CI looks for is the one the benches print
    # after the tests, before the docs build
    assert ci.index("pytest -m slow") < loop.start() < ci.index("mkdocs build")


def test_readme_lists_every_bench():
    readme = (BENCH / "README.md").read_text()
    for path in benches():
        assert f"bench/{path.name} --tiny" in readme, path.name
