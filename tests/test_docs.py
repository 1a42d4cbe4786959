"""The documentation cannot drift from the code: the generated parameters page lists every
field of Params, every field of the params sections has a description, every params key and
`-S` override the docs and README mention exists, the README stays a short front door that
starts with the two commands, and CI runs the README's test command."""
from __future__ import annotations

import importlib.util
import re
import shlex
import typing
from pathlib import Path

import pytest
from pydantic import BaseModel

from synthaug.stages.params import Params, load_params

ROOT = Path(__file__).resolve().parent.parent
STUDY = 'python3 -m venv .venv && .venv/bin/pip install -q -e . && PATH="$PWD/.venv/bin:$PATH" dvc repro'
TESTS = "python3 -m venv .venv && .venv/bin/pip install -q -e '.[test]' && .venv/bin/python -m pytest"
# the modules whose fields must carry a description (the layer types of architectures.py
# are described by the page's own notes)
DESCRIBED = ("synthaug.pipeline.core.settings", "synthaug.pipeline.data.config", "synthaug.pipeline.augment.config",
             "synthaug.pipeline.classifiers.config", "synthaug.pipeline.experiments.config", "synthaug.generators.config",
             "synthaug.stages.params")


def gen_params():
    spec = importlib.util.spec_from_file_location("gen_params", ROOT / "docs" / "gen_params.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# -------------------------------------------------------------------- walking the models
# Written apart from docs/gen_params.py on purpose: a section the generator skips shows up here.

def _models_in(tp) -> list[tuple[str, type[BaseModel]]]:
    """(key suffix, model) for every sub-model a field's type holds: '' for the field itself,
    '.NAME' through a mapping, '[i]' through a list."""
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return [("", tp)]
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Annotated:
        return _models_in(args[0])
    if origin is dict:
        return [(".NAME" + s, m) for s, m in _models_in(args[1])]
    if origin is list:
        return [("[i]" + s, m) for s, m in _models_in(args[0])]
    return [x for a in args for x in _models_in(a)]  # unions (and anything else with args)


def walk(model: type[BaseModel] = Params, prefix: str = ""):
    """(dotted key, field, owning model) for every field reachable from `model`."""
    for name, field in model.model_fields.items():
        key = f"{prefix}{name}"
        yield key, field, model
        for suffix, sub in _models_in(field.annotation):
            yield from walk(sub, f"{key}{suffix}.")


def missing_rows(page: str) -> list[str]:
    """The keys of Params that have no table row on the page."""
    rows = set(re.findall(r"^\| `([^`]+)` \|", page, flags=re.M))
    return sorted({key for key, _, _ in walk()} - rows)


@pytest.fixture(scope="module")
def page() -> str:
    return gen_params().render()


def test_parameters_page_lists_every_field(page):
    keys = {key for key, _, _ in walk()}
    assert len(keys) > 200  # the walk reached the nested sections
    for nested in ("compose.gate.tau", "compose.variants.NAME.ratio", "train.batch_augment.rotate",
                   "train_generator.gan.mode_seeking", "train_generator.diffusion.space",
                   "sample.sets.NAME.sampler", "models.NAME[i].filters", "paths.raw"):
        assert nested in keys
    assert missing_rows(page) == []


def test_missing_rows_are_caught(page):
    """The check can fail: a page without a row, or without a whole section, is reported."""
    assert missing_rows(page.replace("| `compose.gate.tau` |", "| tau |")) == ["compose.gate.tau"]
    cut = "\n".join(line for line in page.splitlines()
                    if not line.startswith("| `train_generator.vae."))
    assert "train_generator.vae.beta" in missing_rows(cut)


def test_parameters_page_shows_defaults_and_descriptions(page):
    assert "| `train.epochs` | int > 0 | `6` | maximum epochs |" in page
    assert ("| `sample.sets.NAME.generator` | one of `gan`, `vae`, `diffusion`, `pretrained` | "
            "required |") in page
    assert "{: #compose.variants.defaults }" in page and "| `real+gan` |" in page


def test_every_params_field_has_a_description():
    bare = [key for key, field, model in walk()
            if model.__module__ in DESCRIBED and model is not Params and not field.description]
    assert bare == [], f"add Field(description=...) to: {', '.join(bare)}"


# -------------------------------------------------------------------- keys the docs mention

SECTIONS = "|".join(Params.model_fields)
KEY_RE = re.compile(rf"`((?:{SECTIONS})\.[A-Za-z0-9_.+<>\[\]-]*[A-Za-z0-9_>\]])")
FILE_RE = re.compile(r"\.(json|md|png|csv|py|yaml|npy|pt)$")  # quality.json is a file


def resolves(key: str) -> bool:
    """Whether a dotted key (placeholders allowed: `<model>`, NAME, MODEL, [i]) names a params
    field. A mapping takes any name; `<...>` matches any field."""
    parts = key.replace("[i]", "").split(".")
    todo = [(Params, parts)]
    while todo:
        model, rest = todo.pop()
        if not rest:
            return True
        head, tail = rest[0], rest[1:]
        names = list(model.model_fields) if head.startswith("<") else [head]
        for name in names:
            field = model.model_fields.get(name)
            if field is None:
                continue
            if not tail:
                return True
            for suffix, sub in _models_in(field.annotation):
                skip = suffix.count(".NAME")
                if len(tail) >= skip:
                    todo.append((sub, tail[skip:]))
            if typing.get_origin(field.annotation) is dict and not _models_in(field.annotation):
                return True  # a mapping of plain values (train.per_model.MODEL.lr)
    return False


def doc_files() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def test_params_keys_in_docs_exist():
    bad = [f"{path.name}: {key}" for path in doc_files()
           for key in KEY_RE.findall(path.read_text(encoding="utf-8"))
           if not FILE_RE.search(key) and not resolves(key)]
    assert bad == []


def test_key_check_can_fail():
    assert resolves("train.per_model.efficientnet_lite0.lr") and resolves("models.NAME[i].units")
    assert resolves("sample.sets.vae-jitter.sigma") and resolves("train_generator.<family>.steps")
    assert not resolves("train.min_epoch_size") and not resolves("compose.gate.tua")


def _commands(text: str) -> list[str]:
    """The commands of every ```bash block, continuation lines joined."""
    blocks = re.findall(r"```bash\n(.*?)```", text, flags=re.S)
    return [line.split("  #")[0] for b in blocks for line in b.replace("\\\n", " ").splitlines()
            if line.strip() and not line.lstrip().startswith("#")]


def test_docs_overrides_validate():
    """Every `-S key=value` of a command in the docs' bash blocks applies to params.yaml and
    validates together with the command's other overrides."""
    checked = 0
    for path in doc_files():
        for command in _commands(path.read_text(encoding="utf-8")):
            args = shlex.split(command)
            overrides = [args[i + 1] for i, a in enumerate(args[:-1]) if a in ("-S", "--set")]
            if overrides:
                load_params(ROOT / "params.yaml", overrides)
                checked += 1
    assert checked >= 15


# -------------------------------------------------------------------- README and CI

def test_readme_is_a_short_front_door():
    raw = (ROOT / "README.md").read_bytes()
    assert len(raw) <= 10_240, f"README.md is {len(raw):,} bytes; move detail into docs/"
    blocks = re.findall(r"```(\w*)\n(.*?)```", raw.decode("utf-8"), flags=re.S)
    assert [b[1].strip() for b in blocks[:2]] == [STUDY, TESTS]
    assert blocks[0][0] == blocks[1][0] == "bash"
    for link in re.findall(r"\]\(((?:docs|pipeline|generators|stages|bench|tests)/[^)#]*)", raw.decode()):
        assert (ROOT / link).exists(), link


def test_results_page_holds_current_figures_only():
    """docs/results.md is the current measured figures, each dated: under 15 KB, no diary."""
    raw = (ROOT / "docs" / "results.md").read_bytes()
    assert len(raw) < 15_000, f"docs/results.md is {len(raw):,} bytes; keep current figures only"
    text = raw.decode("utf-8").lower()
    for word in ("session", "update:", "todo"):
        assert word not in text, word


def test_ci_runs_the_readme_test_command_and_builds_the_docs():
    ci = (ROOT / ".ci" / "run").read_text()
    assert TESTS.replace("'.[test]'", "'.[test,docs]'") in ci.splitlines()
    assert re.search(r"mkdocs build --strict", ci)
    nav = (ROOT / "mkdocs.yml").read_text()
    for page in (ROOT / "docs").glob("*.md"):
        assert f" {page.name}" in nav, f"{page.name} is not in mkdocs.yml's nav"
    assert " parameters.md" in nav and "docs/gen_params.py" in nav
