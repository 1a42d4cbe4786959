"""The root `Params`: the object params.yaml maps to, composed of the sections that live
beside their code (pipeline/*/config.py, generators/config.py), with loading and `-S` overrides.

`load_params(path, overrides)` reads a YAML file, applies `section.key=value` overrides (the
syntax of `dvc exp run -S`, values parsed as YAML) and validates everything before any stage
does work. Every problem becomes a `SynthaugError` with one line naming the key. Only stages/
reads params.yaml; pipeline/ and generators/ get typed sections passed in.
"""
from __future__ import annotations

import copy
import difflib
import types
import typing
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, Field, ValidationError, model_validator

from synthaug.generators.config import SampleConfig, TrainGeneratorConfig
from synthaug.pipeline.augment.config import AugmentConfig
from synthaug.pipeline.classifiers.architectures import LAYER_TYPES, Layer
from synthaug.pipeline.classifiers.config import EvaluateConfig, TrainConfig
from synthaug.pipeline.classifiers.names import taken_names, unknown_model
from synthaug.pipeline.core.errors import SynthaugError
from synthaug.pipeline.core.config import ExecutorConfig
from synthaug.pipeline.core.settings import FLOAT_RE, Section, format_error
from synthaug.pipeline.core.yaml_text import argv_text, read_yaml_file, yaml_error, yaml_problem
from synthaug.pipeline.data.config import ComposeConfig, PrepareConfig
from synthaug.pipeline.experiments.config import StudyConfig, SweepConfig
from synthaug.pipeline.quality.config import QualityConfig

MAX_PARAMS_BYTES = 1 << 20  # a params file is a few KB (pipeline.core.yaml_text)


class PathsConfig(Section):
    """Where stages read and write; relative paths are relative to the working directory."""

    raw: Path = Field(Path("data/raw"), description="torchvision data roots (torchvision:NAME sources)")
    prepared: Path = Field(Path("data/prepared"), description=(
        "prepare: train/ val/ test/ packed splits"))
    augmented: Path = Field(Path("data/augmented"), description=(
        "augment: classic copies of the train split"))
    variants: Path = Field(Path("data/variants"), description=(
        "compose: one packed training set per variant"))
    models: Path = Field(Path("models/classifiers"), description=(
        "train: <variant>/<model>/seed<N>/ model folders"))
    train_metrics: Path = Field(Path("metrics/train"), description=(
        "train: <variant>/<model>/seed<N>/ dvclive metrics, plots, history"))
    evaluate_metrics: Path = Field(Path("metrics/evaluate"), description=(
        "evaluate: <variant>/<model>/seed<N>/ test metrics, confusion matrix"))
    study_metrics: Path = Field(Path("metrics/study"), description=(
        "train --study-seeds: <variant>.json, every seed's test scores by model (one row of "
        "`dvc metrics show` per variant)"))
    report: Path = Field(Path("reports"), description=(
        "report: report.md, results.json, figures/, plots/"))
    generators: Path = Field(Path("models/generators"), description=(
        "train_generator: <family>/ generator folders"))
    generator_metrics: Path = Field(Path("metrics/generators"), description=(
        "train_generator: <family>/ dvclive metrics, sample grids"))
    checkpoints: Path = Field(Path("checkpoints"), description=(
        "train_generator resume state, outside DVC outs (not in git)"))
    synthetic: Path = Field(Path("data/synthetic"), description=(
        "sample: <set>/ packed synthetic sets and figures"))
    judge: Path = Field(Path("models/judge"), description=(
        "judge: the real-trained classifier quality and the gate rely on"))
    quality: Path = Field(Path("reports/quality"), description=(
        "quality: quality.md, quality.json, figures/"))
    sweep: Path = Field(Path("metrics/sweep"), description=(
        "sweep: <model>/results.json, one row per point"))
    crossval: Path = Field(Path("metrics/crossval"), description=(
        "crossval: results.json, the protocol chosen and one row per unit, variant and model"))
    timings: Path = Field(Path("metrics/timings"), description=(
        "every stage: <stage>.json (cells: <stage>/<cell>.json), wall and CPU seconds, peak "
        "memory and the machine, for `dvc metrics show`"))


class Params(Section):
    paths: PathsConfig = PathsConfig()
    prepare: PrepareConfig = PrepareConfig()
    train: TrainConfig = TrainConfig()
    evaluate: EvaluateConfig = EvaluateConfig()
    augment: AugmentConfig = AugmentConfig()
    compose: ComposeConfig = ComposeConfig()
    study: StudyConfig = StudyConfig()
    sweep: SweepConfig = SweepConfig()
    train_generator: TrainGeneratorConfig = TrainGeneratorConfig()
    sample: SampleConfig = SampleConfig()
    quality: QualityConfig = QualityConfig()
    executor: ExecutorConfig = ExecutorConfig()
    models: dict[str, list[Layer]] = Field(default={}, description=(
        "custom architectures, by name: a list of layers each"))

    @model_validator(mode="after")
    def _known_model(self):
        if clash := taken_names(self.models):
            raise ValueError(f"models.{clash[0]}: name taken by a built-in model")
        if error := unknown_model("train.model", self.train.model, self.models):
            raise ValueError(error)
        return self

    @model_validator(mode="after")
    def _study(self):
        for name in self.study.variants:
            if name not in self.compose.variants:
                raise ValueError(f"study.variants: {name!r} is not defined under compose.variants "
                                 f"(defined: {', '.join(self.compose.variants)})")
            v = self.compose.variants[name]
            if v.unlabelled or "pseudo-real" in v.parts or v.use.semi_supervised != "none":
                raise ValueError(f"study.variants: {name!r} (labelled few, unlabelled many) is "
                                 "for the sweep's when points; name it in sweep.when_variants")
        for name, variant in self.compose.variants.items():
            for part in variant.synthetic_parts():
                if part not in self.sample.sets:
                    raise ValueError(
                        f"compose.variants.{name}.parts: {part!r} is neither real, classic, "
                        f"more-real, pseudo-real nor a set under sample.sets "
                        f"({', '.join(self.sample.sets) or 'none'})")
        named = [("quality.model", self.quality.model), ("augment.choose_model",
                                                          self.augment.choose_model),
                 *[("study.models", m) for m in self.study.models]]
        for where, name in named:
            if error := unknown_model(where, name, self.models):
                raise ValueError(error)
        for section, key in [("study", "variants"), ("study", "models"), ("study", "seeds"),
                             ("sweep", "models"), ("sweep", "seeds")]:
            values = getattr(getattr(self, section), key)
            if not values or len(set(values)) != len(values):
                raise ValueError(f"{section}.{key}: must be a non-empty list without repeats")
        named = [*[("sweep.models", m) for m in self.sweep.models],
                 *[("train.per_model", m) for m in self.train.per_model]]
        for where, name in named:
            if error := unknown_model(where, name, self.models):
                raise ValueError(error)
        s = self.sweep
        for name in s.when_variants:
            if name not in self.compose.variants:
                raise ValueError(f"sweep.when_variants: {name!r} is not defined under "
                                 f"compose.variants")
        if bad := [m for m in s.when_models if m not in s.models]:
            raise ValueError(f"sweep.when_models: {bad[0]!r} is not in sweep.models")
        if bad := [k for k in s.when_per_class if k not in s.real_per_class]:
            raise ValueError(f"sweep.when_per_class: {bad[0]} is not in sweep.real_per_class "
                             "(the figure's real-only line)")
        variant = self.compose.variants.get(self.sweep.ratio_variant)
        if (variant is None or not variant.synthetic_parts() or variant.per_class is not None
                or variant.gate or variant.online_augment is not None):
            raise ValueError(f"sweep.ratio_variant: {self.sweep.ratio_variant!r} must be a "
                             f"variant under compose.variants with synthetic parts, a ratio, "
                             f"no gate and no online_augment")
        return self

    def run_name(self, variant: str, model: str, seed: int) -> Path:
        """The sub-path of one study cell under paths.models / train_metrics / evaluate_metrics
        (dvc.yaml spells the same layout)."""
        return Path(variant) / model / f"seed{seed}"

    def architecture(self, name: str) -> list | None:
        """The custom layer list for `name`, or None for a built-in."""
        return self.models.get(name)


def parse_override(text: str) -> tuple[list[str], Any]:
    """`section.key=value` -> (["section", "key"], parsed YAML value)."""
    text = argv_text(text, "-S")  # a C locale: argv bytes it could not decode
    key, sep, raw = text.partition("=")
    if not sep or not key or any(not part for part in key.split(".")):
        raise SynthaugError(f"-S {text!r}: expected section.key=value")
    try:
        value = yaml.safe_load(raw) if raw != "" else ""
    except yaml.YAMLError as e:  # a ReaderError (a control character) has no .problem
        raise SynthaugError(f"-S {key}: value {raw!r} is not valid YAML "
                            f"({yaml_problem(e)})") from None
    if isinstance(value, str) and FLOAT_RE.match(value):
        value = float(value)  # YAML 1.1 reads "1e-4" as a string; users mean the number
    return key.split("."), value


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    for text in overrides:
        keys, value = parse_override(text)
        node = data
        for i, k in enumerate(keys[:-1]):
            child = node.setdefault(k, {})
            if not isinstance(child, dict):
                raise SynthaugError(f"-S {text!r}: {'.'.join(keys[:i + 1])} is not a section")
            node = child
        node[keys[-1]] = value
    return data


def _dotted_keys(tp: Any = Params, prefix: str = "") -> list[str]:
    """Every key of `tp` as a dotted path (`train.epochs`, `compose.gate.tau`); a mapping's
    or a list's members are `*` (`compose.variants.*.ratio`, `models.*.*.filters`)."""
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        out = []
        for name, field in tp.model_fields.items():
            key = f"{prefix}.{name}" if prefix else name
            out += [key, *_dotted_keys(field.annotation, key)]
        return out
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Annotated:
        return _dotted_keys(args[0], prefix)
    if origin in (dict, list, tuple, set, frozenset) and args:
        return _dotted_keys(args[-1] if origin is dict else args[0], f"{prefix}.*")
    if origin in (typing.Union, types.UnionType):
        return list(dict.fromkeys(k for a in args for k in _dotted_keys(a, prefix)))
    return []


def _unknown_key(e: ValidationError, source: str, given: dict | None,
                 overrides: list[str]) -> str | None:
    """The one-line message for an unknown key of `e` (the first; a misspelt key is also a
    missing one, and the unknown one says more), naming where it came from (`-S key=value` or
    the params file `given` was read from) and the nearest valid key; None without one."""
    err = next((x for x in e.errors() if x["type"] == "extra_forbidden"), None)
    if err is None:
        return None
    loc = [str(p) for p in err["loc"] if p not in LAYER_TYPES]
    origin = ""
    typed = loc
    if given is not None:  # loaded from a file: was the key in it, or did -S add it?
        try:
            Params.model_validate(given)
            in_file = False
        except ValidationError as file_e:
            in_file = any(x["type"] == "extra_forbidden" and x["loc"] == err["loc"]
                          for x in file_e.errors())
        origin = f" (from {source})"
        if not in_file:
            for text in reversed(overrides):
                key = text.partition("=")[0].split(".")
                if key[:len(loc)] == loc or loc[:len(key)] == key:
                    origin, typed = f" (from -S {text})", max(key, loc, key=len)
                    break
            else:
                origin = " (from -S)"
    # the dotted key, with mapping names and list positions as `*`, matched against all keys
    keys = _dotted_keys()
    known = {".".join(k.split(".")[:i]) for k in keys for i in range(1, k.count(".") + 2)}
    pattern: list[str] = []
    for part in typed[:-1]:
        star = ".".join([*pattern, "*"]) in known and ".".join([*pattern, part]) not in known
        pattern.append("*" if star else part)
    pattern.append(typed[-1])
    near = difflib.get_close_matches(".".join(pattern), keys, n=1, cutoff=0.75)
    hint = ""
    if near:
        hint = "; did you mean " + ".".join(
            typed[i] if part == "*" and i < len(typed) else "NAME" if part == "*" else part
            for i, part in enumerate(near[0].split("."))) + "?"
    more = f" [and {len(e.errors()) - 1} more]" if len(e.errors()) > 1 else ""
    return f"{'.'.join(loc)}: unknown key{origin}{hint}{more}"


def validate_params(data: dict, source: str = "params", given: dict | None = None,
                    overrides: list[str] | None = None) -> Params:
    """`data` as Params, or a one-line SynthaugError led by `source`. `given` (the params
    file's own data, before `overrides` were applied) lets an unknown key name where it came
    from."""
    try:
        return Params.model_validate(data)
    except ValidationError as e:
        msg = _unknown_key(e, source, given, overrides or []) or format_error(e, LAYER_TYPES)
        raise SynthaugError(f"{source}: {msg}") from None


def load_params(path: Path | str = "params.yaml", overrides: list[str] | None = None) -> Params:
    path = Path(path)
    if not path.exists():
        raise SynthaugError(f"{path}: params file not found")
    if path.is_dir():
        raise SynthaugError(f"{path}: is a folder; --params takes a YAML file (e.g. params.yaml)")
    text = read_yaml_file(path, MAX_PARAMS_BYTES)
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as e:
        raise yaml_error(path, e) from None
    if not isinstance(data, dict):
        raise SynthaugError(f"{path}: expected a mapping of sections at the top level")
    given = copy.deepcopy(data)
    apply_overrides(data, overrides or [])
    return validate_params(data, str(path), given, overrides)
