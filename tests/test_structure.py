"""The package's shape, read from source with `ast` (nothing is imported): imports run one way
(stages -> generators -> pipeline, and pipeline/core/ imports no other pipeline folder), there
are no import cycles, modules stay short, and every DVC stage lists as deps the synthaug code
its command runs."""
from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("pipeline", "generators", "stages")  # the layers, lowest first
MODULE_LIMIT = 300  # lines, any module
STAGE_LIMIT = 100  # lines, a stages/ module: glue only
STAGE_EXCEPTIONS = {"stages/params.py": MODULE_LIMIT}  # the root params schema


# ---------------------------------------------------------------------- the import graph
@cache
def modules() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the three packages."""
    out = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = path
    return out


def _with_parents(name: str) -> list[str]:
    """`a.b.c` -> [a, a.b, a.b.c]: importing a module runs its packages' __init__ first."""
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts) + 1)]


def _is_package(name: str) -> bool:
    return modules()[name].name == "__init__.py"


def _imported(name: str, node: ast.Import | ast.ImportFrom) -> list[str]:
    """The synthaug modules an import statement in module `name` loads."""
    known = modules()
    if isinstance(node, ast.Import):
        targets = [alias.name for alias in node.names]
    else:
        if node.level:  # relative: from the module's package, one level up per extra dot
            here = name.split(".") if _is_package(name) else name.split(".")[:-1]
            here = here[:len(here) - (node.level - 1)]
            base = ".".join(here + ([node.module] if node.module else []))
        else:
            base = node.module or ""
        # `from x import y`: y may be a submodule of package x, else a name defined in x
        targets = [base] + [f"{base}.{alias.name}" for alias in node.names
                            if f"{base}.{alias.name}" in known]
    out = []
    for target in targets:
        out += [m for m in _with_parents(target) if m in known and m != name]
    return out


@cache
def graph(on_demand: bool = False) -> dict[str, set[str]]:
    """Module -> the synthaug modules it imports, at module level or inside functions (also
    under `if TYPE_CHECKING:`: still a dependency of the code, if not of the run); with
    `on_demand`, also the modules it names as "module:Name" strings to import on demand
    (importlib, e.g. generators.common.REGISTRY): code it runs, but no import cycle."""
    return {name: imports_of(name, path.read_text(), on_demand) for name, path in modules().items()}


ON_DEMAND = re.compile(rf"((?:{'|'.join(PACKAGES)})(?:\.\w+)+):\w+")


def imports_of(name: str, source: str, on_demand: bool = False) -> set[str]:
    """The synthaug modules that module `name`, of this source text, imports anywhere (and,
    with `on_demand`, names in "module:Name" strings)."""
    out = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            out.update(_imported(name, node))
        elif (on_demand and isinstance(node, ast.Constant) and isinstance(node.value, str)
              and (m := ON_DEMAND.fullmatch(node.value))):
            out.update(_imported(name, ast.Import(names=[ast.alias(name=m[1])])))
    return out


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component of more than one module (Tarjan)."""
    index, low, stack, on, found = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(g[v]):
            if w not in index:
                visit(w)
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
                found.append(_cycle_in(g, set(component)))

    for v in sorted(g):
        if v not in index:
            visit(v)
    return found


def _cycle_in(g: dict[str, set[str]], component: set[str]) -> list[str]:
    """A shortest path from the component's first module back to itself: a -> b -> ... -> a."""
    start = min(component)
    paths, seen = [[start]], {start}
    while paths:
        path = paths.pop(0)
        for w in sorted(g[path[-1]] & component):
            if w == start:
                return [*path, start]
            if w not in seen:
                seen.add(w)
                paths.append([*path, w])
    raise AssertionError("a strongly connected component without a cycle")


def layer(name: str) -> int:
    return PACKAGES.index(name.split(".")[0])


def reached(start: str) -> set[str]:
    """Every module `start` imports, directly or through others (start included)."""
    g, seen, todo = graph(on_demand=True), {start}, [start]
    while todo:
        for w in g[todo.pop()] - seen:
            seen.add(w)
            todo.append(w)
    return seen


def rel(name: str) -> str:
    return modules()[name].relative_to(ROOT).as_posix()


def test_the_graph_sees_every_kind_of_import():
    source = """
import pipeline.core.errors
from pipeline.data import storage           # y a submodule of package x
from generators.config import SampleConfig  # y a name defined in x
def f():
    from pipeline.classifiers.layers import build_model  # inside a function
    from .outputs import atomic_output                   # relative
    from . import compose
REGISTRY = {"gan": "generators.gan:ConditionalGAN"}  # imported on demand
"""
    statements = {"pipeline", "pipeline.core", "pipeline.core.errors",  # __init__ runs first
                  "pipeline.data", "pipeline.data.storage", "generators", "generators.config",
                  "pipeline.classifiers", "pipeline.classifiers.layers", "pipeline.data.outputs",
                  "pipeline.data.compose"}
    assert imports_of("pipeline.data.prepare", source) == statements
    assert imports_of("pipeline.data.prepare", source, on_demand=True) == {*statements,
                                                                           "generators.gan"}
    assert "pipeline.core.errors" in graph()["stages.params"]  # and the real files are read
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set()}) == [["a", "b", "c", "a"]]


def test_no_import_cycles():
    found = cycles(graph())
    assert not found, "import cycles:\n" + "\n".join(" -> ".join(c) for c in found)


def test_imports_run_one_way():
    """stages -> generators -> pipeline, never back; pipeline/core/ is the ground floor."""
    upward, core = [], []
    for name, targets in sorted(graph().items()):
        for t in sorted(targets):
            if layer(t) > layer(name):
                upward.append(f"{rel(name)} imports {t}")
            parts, tparts = name.split("."), t.split(".")
            if (parts[:2] == ["pipeline", "core"] and tparts[0] == "pipeline" and len(tparts) > 1
                    and tparts[1] != "core"):
                core.append(f"{rel(name)} imports {t}")
    assert not upward, "upward imports:\n" + "\n".join(upward)
    assert not core, "pipeline/core/ imports another pipeline folder:\n" + "\n".join(core)


# ---------------------------------------------------------------------- module sizes
def _lines(path: Path) -> int:
    return len(path.read_text().splitlines())


def test_modules_are_short():
    too_long = [f"{rel(n)}: {_lines(p)} lines" for n, p in modules().items()
                if _lines(p) > MODULE_LIMIT]
    assert not too_long, f"modules over {MODULE_LIMIT} lines:\n" + "\n".join(too_long)


def test_stage_modules_are_glue():
    too_long = []
    for path in sorted((ROOT / "stages").glob("*.py")):
        name = path.relative_to(ROOT).as_posix()
        limit = STAGE_EXCEPTIONS.get(name, STAGE_LIMIT)
        if _lines(path) > limit:
            too_long.append(f"{name}: {_lines(path)} lines (limit {limit})")
    assert not too_long, "stage modules over their limit:\n" + "\n".join(too_long)


# ---------------------------------------------------------------------- dvc.yaml deps
def commands() -> dict[str, str]:
    """`synthaug` sub-command -> its stage module, read from stages/cli.py:
    `app.command("name")(module.command)` and `app.add_typer(module.app, name="name")`."""
    tree = ast.parse((ROOT / "stages/cli.py").read_text())
    out = {}
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        if (isinstance(f, ast.Call) and isinstance(f.func, ast.Attribute)
                and f.func.attr == "command" and node.args and isinstance(node.args[0], ast.Attribute)):
            out[f.args[0].value] = f"stages.{node.args[0].value.id}"
        elif isinstance(f, ast.Attribute) and f.attr == "add_typer":
            name = next(k.value.value for k in node.keywords if k.arg == "name")
            out[name] = f"stages.{node.args[0].value.id}"
    return out


def _lookup(params: dict, dotted: str):
    for key in dotted.split("."):
        params = params[key]
    return params


def dvc_stages() -> dict[str, tuple[str, list[str]]]:
    """Stage (matrix cells expanded) -> (command, code deps), `${item.*}` filled in; data
    deps (other `${...}` paths) are left out."""
    spec = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    out = {}
    for stage, body in spec["stages"].items():
        cells = [{}]
        for key, values in (body.get("matrix") or {}).items():
            if isinstance(values, str):  # ${section.key}: a list in params.yaml
                values = _lookup(params, values.strip("${}"))
            cells = [{**c, key: v} for c in cells for v in values]
        for cell in cells:
            def fill(text: str) -> str:
                return re.sub(r"\$\{item\.(\w+)\}", lambda m: str(cell[m[1]]), text)
            deps = [fill(d if isinstance(d, str) else next(iter(d))) for d in body.get("deps", [])]
            name = stage + "".join(f"@{v}" for v in cell.values())
            out[name] = (fill(body["cmd"]), [d.rstrip("/") for d in deps if "${" not in d])
    return out


def _is_docstring_only(path: Path) -> bool:
    """A package __init__ with nothing but a docstring: it cannot change what a stage does."""
    body = ast.parse(path.read_text()).body
    return all(isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant) for s in body)


def test_every_stage_depends_on_the_code_it_runs():
    """Each DVC stage's deps cover every synthaug module its command's stage module imports,
    directly or not (a dep may be the file or a folder above it)."""
    cmds, missing = commands(), []
    stages = dvc_stages()
    assert stages, "no stages read from dvc.yaml"
    for stage, (cmd, deps) in sorted(stages.items()):
        words = cmd.split()
        assert words[0] == "synthaug" and words[1] in cmds, f"{stage}: unknown command {cmd!r}"
        for dep in deps:
            assert (ROOT / dep).exists(), f"{stage}: dep {dep} does not exist"
        for module in sorted(reached(cmds[words[1]])):
            path = rel(module)
            if _is_docstring_only(modules()[module]):
                continue
            if not any(path == d or path.startswith(d + "/") for d in deps):
                missing.append(f"{stage}: {path}")
    assert not missing, "code a stage runs but does not list as a dep:\n" + "\n".join(missing)


def test_the_committed_lock_holds_only_the_stages_of_dvc_yaml():
    """DVC keeps a lock entry for a stage that dvc.yaml no longer has, and rewrites the whole
    file (a slow round-trip YAML parse and dump) after every stage: a lock bloated with the
    old layouts' 50 stages (258 KB) cost ~2 s of DVC bookkeeping per stage."""
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    live = set()
    for name, body in stages.items():
        if "matrix" not in body:
            live.add(name)
            continue
        (key, values), = body["matrix"].items()  # one axis, inline list or ${section.key}
        if isinstance(values, str):
            section, _, field = values.strip("${}").partition(".")
            values = params[section][field]
        live |= {f"{name}@{v}" for v in values}
    locked = set(yaml.safe_load((ROOT / "dvc.lock").read_text())["stages"])
    assert locked <= live, f"stale dvc.lock entries: {sorted(locked - live)}"
