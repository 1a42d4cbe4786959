"""The package's shape, read from source with `ast` (nothing is imported): imports run one way
(stages -> generators -> pipeline, and inside pipeline/ from a floor to its own or lower ones),
there are no import cycles, no private name is imported across modules, every code folder is
an installed `synthaug.*` package, modules stay short, and every DVC stage lists as deps the
synthaug code its command runs."""
from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

import tomllib

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("pipeline", "generators", "stages")  # the layers, lowest first
# the floors inside pipeline/, lowest first: a module imports its own floor or lower ones
FLOORS = {"core": 0, "data": 1, "augment": 1, "figures": 1, "classifiers": 2, "quality": 3,
          "stats": 3, "experiments": 4, "report": 5}
MODULE_LIMIT = 300  # lines, any module
STAGE_LIMIT = 90  # code lines of a stages/ module (docstrings, comments, blanks left out):
# glue only; a smell detector, not a target
STAGE_EXCEPTIONS = {"stages/params.py": MODULE_LIMIT}  # the root params schema


# ---------------------------------------------------------------------- the import graph
@cache
def modules() -> dict[str, Path]:
    """Dotted module name (synthaug.pipeline.core.errors, ...) -> file, for every module of
    the three packages and the package root's own __init__ and __main__."""
    out = {"synthaug": ROOT / "__init__.py", "synthaug.__main__": ROOT / "__main__.py"}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = ["synthaug", *path.relative_to(ROOT).with_suffix("").parts]
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = path
    return out


def _with_parents(name: str) -> list[str]:
    """`synthaug.a.b` -> [synthaug.a, synthaug.a.b]: importing a module runs its packages'
    __init__ first (the package root's too, but it imports nothing until called: it counts
    only where it is imported by name)."""
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(min(2, len(parts)), len(parts) + 1)]


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


ON_DEMAND = re.compile(r"(synthaug(?:\.\w+)+):\w+")


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
    """0 pipeline, 1 generators, 2 stages; the package root sits above them all."""
    parts = name.split(".")
    return PACKAGES.index(parts[1]) if len(parts) > 1 and parts[1] in PACKAGES else len(PACKAGES)


def floor(name: str) -> int | None:
    """A pipeline module's floor (FLOORS), None outside pipeline/ or for pipeline itself."""
    parts = name.split(".")
    return FLOORS[parts[2]] if parts[1:2] == ["pipeline"] and len(parts) > 2 else None


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
import synthaug.pipeline.core.errors
from synthaug.pipeline.data import storage           # y a submodule of package x
from synthaug.generators.config import SampleConfig  # y a name defined in x
def f():
    from synthaug.pipeline.classifiers.layers import build_model  # inside a function
    from .compose import compose_variant                          # relative
    from . import counts
REGISTRY = {"gan": "synthaug.generators.gan:ConditionalGAN"}  # imported on demand
"""
    statements = {"synthaug.pipeline", "synthaug.pipeline.core",  # __init__ runs first
                  "synthaug.pipeline.core.errors", "synthaug.pipeline.data",
                  "synthaug.pipeline.data.storage", "synthaug.generators",
                  "synthaug.generators.config", "synthaug.pipeline.classifiers",
                  "synthaug.pipeline.classifiers.layers", "synthaug.pipeline.data.compose",
                  "synthaug.pipeline.data.counts"}
    name = "synthaug.pipeline.data.prepare"
    assert imports_of(name, source) == statements
    assert imports_of(name, source, on_demand=True) == {*statements, "synthaug.generators.gan"}
    assert "synthaug.pipeline.core.errors" in graph()["synthaug.stages.params"]  # real files
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set()}) == [["a", "b", "c", "a"]]
    assert private_imports("synthaug.pipeline.data.counts",
                           "from synthaug.pipeline.data.sources import _hidden, SKIPPED\n"
                           "from .prepare import _split\nfrom . import _x") == \
        ["_hidden from synthaug.pipeline.data.sources", "_split from synthaug.pipeline.data.prepare",
         "_x from synthaug.pipeline.data"]


def test_no_import_cycles():
    found = cycles(graph())
    assert not found, "import cycles:\n" + "\n".join(" -> ".join(c) for c in found)


def test_imports_run_one_way():
    """stages -> generators -> pipeline, never back; inside pipeline/, from a floor to its
    own or a lower one (FLOORS: core < data, augment, figures < classifiers < quality, stats <
    experiments < report)."""
    upward, down = [], []
    assert {p.name for p in (ROOT / "pipeline").iterdir() if (p / "__init__.py").exists()} \
        == set(FLOORS), "a pipeline/ folder without a floor in FLOORS (or a floor without one)"
    for name, targets in sorted(graph().items()):
        for t in sorted(targets):
            if t == "synthaug" and name != "synthaug.__main__":
                upward.append(f"{rel(name)} imports the package root")
            elif layer(t) > layer(name):
                upward.append(f"{rel(name)} imports {t}")
            elif floor(name) is not None and floor(t) is not None and floor(t) > floor(name):
                down.append(f"{rel(name)} (floor {floor(name)}) imports {t} (floor {floor(t)})")
    assert not upward, "upward imports:\n" + "\n".join(upward)
    assert not down, "imports up the floors of pipeline/:\n" + "\n".join(down)


def private_imports(name: str, source: str) -> list[str]:
    """`_name from module` for each private name that module `name` imports from another
    synthaug module (a private helper is its module's own business)."""
    out = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom):
            base = _imported(name, ast.ImportFrom(module=node.module, names=[], level=node.level))
            origin = base[-1] if base else node.module
            for alias in node.names:
                if alias.name.startswith("_") and not alias.name.startswith("__"):
                    out.append(f"{alias.name} from {origin}")
    return out


def test_no_private_name_is_imported_across_modules():
    found = [f"{rel(n)}: {x}" for n, p in modules().items() for x in private_imports(n, p.read_text())]
    assert not found, "private names imported from another module:\n" + "\n".join(found)


def test_every_code_folder_installs_under_synthaug():
    """pip install puts pipeline/, generators/, stages/ (and every folder below with an
    __init__.py) under `synthaug.` and nothing else at the top of site-packages."""
    tool = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert tool["package-dir"] == {"synthaug": "."}
    folders = {"synthaug"} | {"synthaug." + ".".join(p.parent.relative_to(ROOT).parts)
                              for package in PACKAGES for p in (ROOT / package).rglob("__init__.py")}
    assert set(tool["packages"]) == folders


# ---------------------------------------------------------------------- module sizes
def _lines(path: Path) -> int:
    return len(path.read_text().splitlines())


def test_modules_are_short():
    too_long = [f"{rel(n)}: {_lines(p)} lines" for n, p in modules().items()
                if _lines(p) > MODULE_LIMIT]
    assert not too_long, f"modules over {MODULE_LIMIT} lines:\n" + "\n".join(too_long)


def _code_lines(path: Path) -> int:
    """Lines of code: a command's docstring (its --help, with examples) is not glue."""
    source = path.read_text()
    docs = set()
    for node in ast.walk(ast.parse(source)):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) \
                and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
            docs.update(range(body[0].lineno, body[0].end_lineno + 1))
    return sum(1 for i, line in enumerate(source.splitlines(), 1)
               if i not in docs and line.strip() and not line.strip().startswith("#"))


def test_stage_modules_are_glue():
    too_long = []
    for path in sorted((ROOT / "stages").glob("*.py")):
        name = path.relative_to(ROOT).as_posix()
        limit = STAGE_EXCEPTIONS.get(name, STAGE_LIMIT)
        if _code_lines(path) > limit:
            too_long.append(f"{name}: {_code_lines(path)} lines of code (limit {limit})")
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
            out[f.args[0].value] = f"synthaug.stages.{node.args[0].value.id}"
        elif isinstance(f, ast.Attribute) and f.attr == "add_typer":
            name = next(k.value.value for k in node.keywords if k.arg == "name")
            out[name] = f"synthaug.stages.{node.args[0].value.id}"
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


def test_the_wheel_installs_one_top_level_package(tmp_path):
    """`pip install .` puts `synthaug` (and its dist-info) at the top of site-packages, no
    generic `pipeline`, `generators` or `stages`: the wheel is what pip installs."""
    import subprocess
    import sys
    import zipfile

    import shutil

    pytest.importorskip("setuptools")
    src = tmp_path / "src"  # a copy: setuptools builds inside the source tree
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "__init__.py", "__main__.py"):
        shutil.copy(ROOT / name, src / name)
    for package in PACKAGES:
        shutil.copytree(ROOT / package, src / package,
                        ignore=shutil.ignore_patterns("__pycache__"))
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                        "--no-build-isolation", "-w", str(tmp_path), str(src)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    wheel, = tmp_path.glob("synthaug-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {n.split("/")[0] for n in names} == {"synthaug", wheel.name.split("-py")[0] + ".dist-info"}
    assert {"synthaug/__init__.py", "synthaug/__main__.py", "synthaug/pipeline/core/pool.py",
            "synthaug/generators/common.py", "synthaug/stages/cli.py"} <= set(names)
    assert not any(n.startswith(("synthaug/tests/", "synthaug/bench/", "synthaug/docs/"))
                   for n in names)
