"""The parameters page, generated from the pydantic models so that it cannot drift.

It walks `stages.params.Params` and every nested section (sub-sections such as compose.gate,
mappings of sub-models such as compose.variants.NAME and sample.sets.NAME, the mapping form
of train.batch_augment, the layer types of models.NAME) and writes one table per section:
key, type, default and the field's `description`.

Two ways to run it:
- as a mkdocs hook (`hooks:` in mkdocs.yml): `mkdocs build` / `mkdocs serve` add the page as
  parameters.md at build time, so the site always shows the code's current defaults;
- `python docs/gen_params.py [OUT.md]` prints the page (or writes it to OUT.md).

Key spelling: a mapping's entry is `NAME` (compose.variants.NAME.ratio), a list item `[i]`
(models.NAME[i].filters). tests/test_docs.py walks the models by the same rule and checks that
the page lists every key.
"""
from __future__ import annotations

import inspect
import re
import sys
import types
import typing
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import annotated_types as at
import yaml
from pydantic import BaseModel
from pydantic.fields import FieldInfo

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run from anywhere, with or without `pip install -e .`
    sys.path.insert(0, str(ROOT))

PAGE = "parameters.md"

# per top-level section: what it is for (where the class has no docstring) and where it is read
INTRO = {
    "paths": "Read by every stage.",
    "prepare": "The real images: source, size and split. Read by [prepare](stages.md#prepare) "
               "and by [sweep](stages.md#sweep), which redraws the low-data subsets.",
    "train": "One classifier recipe, for [train](stages.md#train) and [sweep](stages.md#sweep). "
             "The transfer-learning fields are explained in [Transfer learning](transfer.md), "
             "`batch_augment` and `online_augment` in [Augmentation](augmentation.md).",
    "evaluate": "How [evaluate](stages.md#evaluate), and the test at the end of every train "
                "cell, score the real test split.",
    "augment": "See [Augmentation](augmentation.md) for the spec and the presets.",
    "compose": "The study's training sets ([compose](stages.md#compose)); the gate is "
               "explained in [Quality and the gate](quality.md#the-quality-gate).",
    "study": "Read by dvc.yaml's `train` matrix and by [report](stages.md#report).",
    "sweep": "See [sweep](stages.md#sweep).",
    "train_generator": "See [Generators](generators.md) and "
                       "[train-generator](stages.md#train-generator).",
    "sample": "See [Generators](generators.md#sampling-synthetic-sets) for the samplers.",
    "quality": "See [Quality and the gate](quality.md).",
    "models": "Custom architectures: a name maps to a list of layers, each a mapping with a "
              "`type` (see [Classifiers](classifiers.md)); one table per layer type below.",
}

# the layer types (pipeline/classifiers/architectures.py) carry no descriptions of their own
LAYER_NOTES = {
    "type": "the layer type",
    "filters": "output channels",
    "kernel": "kernel size: n or [h, w]",
    "stride": "stride: n or [h, w]",
    "maxpool.stride": "stride: n or [h, w]; null: the window size (Keras' default)",
    "residual.stride": "stride of the block's first conv and of its shortcut",
    "padding": "`valid` (Keras' default), `same` (keeps ceil(n / stride)) or a number of pixels",
    "dilation": "dilation: n or [h, w]",
    "bias": "add a bias",
    "activation": "applied after the layer (null: none)",
    "size": "pooling window: n or [h, w]",
    "rate": "dropout rate",
    "units": "output features",
    "fn": "the activation function",
}

CONSTRAINT = [(at.Gt, "gt", ">"), (at.Ge, "ge", "≥"), (at.Lt, "lt", "<"), (at.Le, "le", "≤")]


def _aliases() -> dict:
    """Named types of the configs, shown by their meaning rather than their structure."""
    from synthaug.pipeline.augment.config import AugmentSpec
    from synthaug.pipeline.core.settings import Device

    return {AugmentSpec: "preset name or list of steps (see [Augmentation](augmentation.md))",
            Device: "device name"}


# ------------------------------------------------------------------------- walking the models

def _is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _strip(tp: Any) -> Any:
    """The type without Annotated metadata."""
    while get_origin(tp) is typing.Annotated:
        tp = get_args(tp)[0]
    return tp


def _branches(tp: Any) -> tuple:
    """The branches of a (nested) union, flattened; annotated branches keep their bounds."""
    if get_origin(tp) is typing.Annotated and get_origin(_strip(tp)) in (Union, types.UnionType):
        return _branches(_strip(tp))
    if get_origin(tp) in (Union, types.UnionType):
        return tuple(b for a in get_args(tp) for b in _branches(a))
    return (tp,)


def _union_args(tp: Any) -> tuple:
    """The branches of a (nested, annotated) union, flattened."""
    tp = _strip(tp)
    if get_origin(tp) in (Union, types.UnionType):
        return tuple(b for a in get_args(tp) for b in _union_args(a))
    return (tp,)


def nested(tp: Any) -> list[tuple[str, type[BaseModel]]]:
    """The sub-models a field's type holds, each with the key suffix that reaches it:
    '' (the field itself, possibly as one branch of a union), '.NAME' (a mapping's values),
    '[i]' (a list's items)."""
    out = []
    for arg in _union_args(tp):
        origin = get_origin(arg)
        if _is_model(arg):
            out.append(("", arg))
        elif origin is dict:
            out += [(".NAME" + s, m) for s, m in nested(get_args(arg)[1])]
        elif origin is list:
            out += [("[i]" + s, m) for s, m in nested(get_args(arg)[0])]
    return out


def sections(model: type[BaseModel] = None, prefix: str = "") -> list[tuple[str, type[BaseModel]]]:
    """(key prefix, model) of every section, depth first in field order, the root excluded."""
    if model is None:
        from synthaug.stages.params import Params

        model = Params
    out = []
    for name, field in model.model_fields.items():
        for suffix, sub in nested(field.annotation):
            key = f"{prefix}{name}{suffix}"
            out.append((key, sub))
            out += sections(sub, key + ".")
    return out


# ------------------------------------------------------------------------- formatting

def text(s: str, cell: bool = True) -> str:
    """Markdown for a table cell (or a paragraph): `<` escaped outside `code`, one line,
    no pipes in cells."""
    s = " ".join(s.split())
    parts = s.split("`")
    for i in range(0, len(parts), 2):  # outside code spans
        parts[i] = parts[i].replace("<", "&lt;")  # `<variant>` would be an HTML tag
    s = "`".join(parts)
    return s.replace("|", "/") if cell else s


def _bounds(meta: list) -> str:
    flat = []
    for m in meta:
        flat += m.metadata if isinstance(m, FieldInfo) else [m]
    lower = upper = None
    min_len = max_len = None
    for m in flat:
        for cls, attr, sign in CONSTRAINT:
            if isinstance(m, cls):
                if sign in (">", "≥"):
                    lower = (sign, getattr(m, attr))
                else:
                    upper = (sign, getattr(m, attr))
        if isinstance(m, at.MinLen):
            min_len = m.min_length
        if isinstance(m, at.MaxLen):
            max_len = m.max_length
    out = ""
    if lower and upper:
        flip = {">": "<", "≥": "≤"}[lower[0]]
        out = f" ({lower[1]:g} {flip} x {upper[0]} {upper[1]:g})"
    elif lower:
        out = f" {lower[0]} {lower[1]:g}"
    elif upper:
        out = f" {upper[0]} {upper[1]:g}"
    if min_len is not None or max_len is not None:
        out += f" ({min_len or 0} to {max_len} items)" if max_len else f" (≥ {min_len} items)"
    return out


def type_text(tp: Any, meta: list | None = None, anchors: dict | None = None) -> str:
    """A readable type: `int > 0 or null`, one of `a`, `b`; mapping of name to ..."""
    anchors = anchors or {}
    aliases = _aliases()
    for alias, words in aliases.items():
        if tp == alias:
            return words
    origin, args = get_origin(tp), get_args(tp)
    if origin is typing.Annotated:
        if get_origin(args[0]) in (Union, types.UnionType):  # e.g. a validated union
            return type_text(args[0], meta, anchors)
        return type_text(args[0], list(args[1:]) + list(meta or []), anchors)
    if tp is type(None):
        return "null"
    if origin in (Union, types.UnionType) and all(_layer_type(a) for a in args):
        return "layer (" + ", ".join(f"[{_layer_type(a)}](#{anchors[a]})" if a in anchors
                                     else _layer_type(a) for a in args) + ")"
    if origin in (Union, types.UnionType):  # field-level bounds apply to the non-null branch
        branches = _branches(tp)
        parts = [type_text(a, meta, anchors) for a in branches if a is not type(None)]
        if type(None) in branches:
            parts.append("null")
        return " or ".join(parts)
    if origin is Literal:
        values = ", ".join(f"`{yaml_value(a)}`" for a in args)
        return f"one of {values}" if len(args) > 1 else values
    if origin is list:
        return f"list of {type_text(args[0], None, anchors)}" + _bounds(meta or [])
    if origin is tuple:
        return "[" + ", ".join(type_text(a, None, anchors) for a in args) + "]"
    if origin is dict:
        return f"mapping of name to {type_text(args[1], None, anchors)}"
    if _is_model(tp):
        anchor = anchors.get(tp)
        return f"[mapping](#{anchor})" if anchor else "mapping"
    if tp is Any:
        return "any"
    names = {int: "int", float: "float", str: "str", bool: "bool", Path: "path"}
    return names.get(tp, getattr(tp, "__name__", str(tp))) + _bounds(meta or [])


def _plain(v: Any) -> Any:
    if isinstance(v, BaseModel):
        return v.model_dump(mode="json", exclude_defaults=True)
    if isinstance(v, Path):
        return str(v)
    if isinstance(v, tuple):
        return [_plain(x) for x in v]
    if isinstance(v, list):
        return [_plain(x) for x in v]
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    return v


def yaml_value(v: Any) -> str:
    """`v` as it is written in params.yaml (flow style, one line)."""
    out = yaml.safe_dump(_plain(v), default_flow_style=True, width=10_000, sort_keys=False)
    return out.strip().removesuffix("...").strip()


def default_text(field: FieldInfo, key: str, anchors: dict) -> str:
    if field.is_required():
        return "required"
    value = field.get_default(call_default_factory=True)
    if isinstance(value, BaseModel):
        return f"[below](#{key})"
    if isinstance(value, dict) and value and all(isinstance(v, BaseModel) for v in value.values()):
        return f"[below](#{key}.defaults)"
    return f"`{yaml_value(value)}`"


def table(model: type[BaseModel], prefix: str, anchors: dict) -> list[str]:
    rows = ["| key | type | default | description |", "|---|---|---|---|"]
    for name, field in model.model_fields.items():
        key = f"{prefix}{name}"
        kind = type_text(field.annotation, list(field.metadata), anchors)
        kind_name = (_layer_type(model) or "").split(", ")[0]
        about = field.description or (LAYER_NOTES.get(f"{kind_name}.{name}")
                                      or LAYER_NOTES.get(name, "") if kind_name else "")
        rows.append(f"| `{key}` | {text(kind)} | {default_text(field, key, anchors)} | "
                    f"{text(about)} |")
    return rows


def defaults_table(model: type[BaseModel], prefix: str) -> list[str]:
    """The default entries of mappings of sub-models (compose.variants, sample.sets)."""
    out = []
    for name, field in model.model_fields.items():
        value = field.get_default(call_default_factory=True)
        if isinstance(value, dict) and value and all(isinstance(v, BaseModel)
                                                     for v in value.values()):
            key = f"{prefix}{name}"
            out += ["", f"Default entries of `{key}` (fields left at their defaults are not "
                        f"shown):", f"{{: #{key}.defaults }}", "",
                    "| name | value |", "|---|---|"]
            out += [f"| `{n}` | `{yaml_value(v)}` |" for n, v in value.items()]
    return out


def _doc(model: type[BaseModel]) -> str:
    doc = model.__dict__.get("__doc__")
    return inspect.cleandoc(doc) if doc else ""


def _first_sentence(s: str) -> str:
    s = " ".join(s.split())
    return s.split(". ")[0].rstrip(".") + "." if s else ""


def _changed(a: Any, b: Any, key: str = "") -> list[str]:
    """The keys whose values differ between two dumps."""
    if isinstance(a, dict) and isinstance(b, dict):
        return [k for n in sorted(set(a) | set(b), key=str)
                for k in _changed(a.get(n), b.get(n), f"{key}.{n}" if key else str(n))]
    return [] if a == b else [key]


def _layer_type(model: type[BaseModel]) -> str | None:
    if not _is_model(model):
        return None
    field = model.model_fields.get("type")
    return ", ".join(get_args(_strip(field.annotation))) if field is not None else None


def render() -> str:
    """The whole page, as markdown."""
    from synthaug.stages.params import Params

    found = sections()
    count = {}
    for key, _ in found:
        count[key] = count.get(key, 0) + 1
    anchors, titled = {}, []
    for key, model in found:  # a key that several models share (layer types): by type
        kind = _layer_type(model)
        anchor = key.replace("[i]", "")
        anchor = f"{anchor}.{kind.split(', ')[0]}" if count[key] > 1 and kind else anchor
        anchors.setdefault(model, anchor)
        title = f"{key} with type {kind}" if count[key] > 1 and kind else key
        titled.append((key, model, anchor, title))

    lines = [
        "# Parameters",
        "",
        "*This page is generated from the pydantic models by `docs/gen_params.py` (a mkdocs "
        "hook), so it always shows the code's keys, types and defaults.*",
        "",
        "Every section of `params.yaml` is a typed config that lives beside its code: "
        "`pipeline/<domain>/config.py` for the library's sections, `generators/config.py` for "
        "`train_generator` and `sample`, and `stages/params.py` for the root and `paths`. "
        "Unknown keys, wrong types and bad values are rejected before any stage does work, "
        "with exit code 2 and one line that names the key and what is allowed:",
        "",
        "```",
        "$ synthaug train -S train.epochs=-1",
        "error: params.yaml: train.epochs: Input should be greater than 0 (got -1)",
        "$ synthaug train -S train.model=vgg",
        "error: params.yaml: train.model: unknown model 'vgg'; allowed: cnn, lenet5, "
        "resnet_small, efficientnet_lite0, resnet18, mobilenet_v3_small, keras_seed, letters",
        "```",
        "",
        "Override any key for one run with `-S section.key=value` (`synthaug COMMAND -S ...` or "
        "`dvc exp run -S ...`; values are YAML). A mapping's entries are written `NAME` "
        "(`compose.variants.NAME.ratio` is `compose.variants.real+gan.ratio` for the variant "
        "`real+gan`), a list's items `[i]`.",
        "",
        "## Sections {#sections}",
        "",
        "| key | type | default | description |",
        "|---|---|---|---|",
    ]
    for name, field in Params.model_fields.items():
        kind = type_text(field.annotation, list(field.metadata), anchors)
        where = f"[below](#{name})" if _is_model(field.annotation) else default_text(field, name, anchors)
        about = " ".join(filter(None, [_first_sentence(_doc(field.annotation))
                                       if _is_model(field.annotation) else "",
                                       INTRO.get(name, "")]))
        lines.append(f"| `{name}` | {text(kind)} | {where} | {text(about)} |")
    lines.append("")
    repo = ROOT / "params.yaml"
    if repo.is_file():
        from synthaug.stages.params import load_params

        changed = _changed(Params().model_dump(mode="json"),
                           load_params(repo).model_dump(mode="json"))
        keys = ", ".join(f"`{k}`" for k in changed) or "nothing"
        lines += [f"The repository's `params.yaml` repeats these defaults, with comments; it "
                  f"differs from them in: {keys}.", ""]

    seen = set()
    for key, model, anchor, title in titled:
        root = re.split(r"[.\[]", key)[0]
        top = key == root
        if root not in seen:  # a root field that is no section itself (models) gets a heading
            seen.add(root)
            lines += [f"## {root} {{#{root}}}", ""]
            if top and _doc(model):
                lines += [text(_doc(model), cell=False), ""]
            lines += [INTRO[root], ""] if root in INTRO else []
        if not top:
            lines += [f"### {title} {{#{anchor}}}", ""]
            if _doc(model):
                lines += [text(_doc(model), cell=False), ""]
        lines += table(model, f"{key}.", anchors)
        lines += defaults_table(model, f"{key}.")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


# ------------------------------------------------------------------------- mkdocs hook

def on_files(files, config):
    """mkdocs hook: add the generated page to the site's files."""
    from mkdocs.structure.files import File

    existing = files.get_file_from_path(PAGE)
    if existing is not None:
        files.remove(existing)
    files.append(File.generated(config, PAGE, content=render()))
    return files


if __name__ == "__main__":
    page = render()
    if len(sys.argv) > 1:
        Path(sys.argv[1]).write_text(page, encoding="utf-8")
    else:
        sys.stdout.write(page)
