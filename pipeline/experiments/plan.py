"""What a study will run, and about how long it takes on this machine, before any work
(`synthaug check` prints both).

The plan counts the units that cost time: the study's cells (variant x seed per model), the
sweep's points per model (real_per_class, ratio and when points, less those the pool cannot
give: `checks.sweep_skip`), the generators the train_generator stage trains and the ones the
when points train per k. The estimate prices each unit from measured speeds:

- classifier fits: the seconds one fit took in an earlier sweep on this machine
  (`paths.sweep/<model>/results.json`, `train_seconds` per point) where there is one; else
  per-fit constants measured on 2-core AMD EPYCs with AVX512-BF16 (2026-12-06,
  docs/results.md: cnn 2.4 s for 6 x 1,024 samples of 28 x 28 on a Zen 4, efficientnet_lite0
  12.3 s for the study's 5 x 1,024 at input 40 with three block groups frozen and the weight
  average on a Zen 5, 2026-12-07, one thread each), scaled by the samples a fit draws and the
  pixels;
- generator steps: ms per step of one uncontended thread at 28 x 28 (GAN 18.5, VAE 12,
  diffusion 7.9 with its autoencoder's steps), from the train_generator stage of a 32 x 32 RGB
  folder study on a 2-core AMD EPYC Zen 5 with AVX512-BF16 (2026-12-07: GAN 76 s for 2,400
  steps, VAE 25 s for 1,200, diffusion 35 s for 2,600, three one-thread processes sharing two
  cores), scaled by the image side;
- the other stages and DVC's bookkeeping: about a minute;
- cells run over min(cores, 4) one-thread workers; a CPU without AVX512-BF16 or AMX
  is slower (AVX-512 x1.25, measured with the AVX2 cap; AVX2 only x1.6).
Torch-free and fast: it reads a few JSON files at most.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from synthaug.pipeline.augment.config import AUTO, AugmentConfig
from synthaug.pipeline.data.config import SEMI_FIT_COST, ComposeConfig
from synthaug.pipeline.experiments.checks import sweep_skip
from synthaug.pipeline.experiments.config import StudyConfig, SweepConfig

REF_CPU = "2-core AMD EPYCs with AVX512-BF16 (Zen 4 and Zen 5, 2026-12-06, docs/results.md)"
# seconds of one fit at the reference recipe: (seconds, samples drawn, image side) per model
FIT_SECONDS = {"cnn": (2.4, 6 * 1024, 28), "efficientnet_lite0": (12.3, 5 * 1024, 40)}
FIT_FALLBACK = "cnn"  # models without a measurement are priced as the cnn
STEP_MS = {"gan": 18.5, "vae": 12.0, "diffusion": 7.9}  # per optimiser step at 28 x 28
OTHER_SECONDS = 60.0  # prepare, augment, judge, sample, quality, compose, report, DVC
ISA_FACTOR = {"bf16": 1.0, "avx512": 1.25, "avx2": 1.6}


@dataclass
class Plan:
    cells: dict[str, int]  # model -> study cells (variants x seeds)
    sweep: dict[str, int]  # model -> real_per_class and ratio points
    when: dict[str, int]  # model -> when points
    generators: dict[str, int]  # family -> optimiser steps (train_generator stage)
    when_generators: dict[str, int] = field(default_factory=dict)  # family -> steps, all k
    classic: dict[str, int] = field(default_factory=dict)  # augment.pipeline auto: model -> fits
    candidates: list[str] = field(default_factory=list)  # auto: the candidates tried
    protocol: str = ""  # the protocol the rule picks, and why (pipeline.experiments.crossval)
    crossval: dict[str, int] = field(default_factory=dict)  # k-fold: model -> fits, all units
    crossval_generators: dict[str, int] = field(default_factory=dict)  # family -> steps
    when_semi: dict[str, int] = field(default_factory=dict)  # model -> FixMatch when points
    labellers: dict[str, int] = field(default_factory=dict)  # model -> pseudo-labelling fits

    def lines(self) -> list[str]:
        each = lambda d: ", ".join(f"{m} {n}" for m, n in d.items()) or "none"  # noqa: E731
        cv = ([f"crossval fits: {sum(self.crossval.values())} ({each(self.crossval)}), and "
               f"{', '.join(self.crossval_generators) or 'no'} generators trained per unit"]
              if self.crossval else [])
        head = [f"protocol: {self.protocol}"] if self.protocol else []
        return head + cv + [f"study cells: {sum(self.cells.values())} ({each(self.cells)})",
                f"sweep points: {sum(self.sweep.values())} ({each(self.sweep)})",
                f"when points: {sum(self.when.values())} ({each(self.when)})"
                + (f", and {sum(self.labellers.values())} fits that pseudo-label the pool "
                   f"({each(self.labellers)})" if self.labellers else ""),
                f"generators: {len(self.generators)} ({', '.join(self.generators) or 'none'})"
                + (f", and {sum(1 for _ in self.when_generators)} famil"
                   f"{'y' if len(self.when_generators) == 1 else 'ies'} retrained per when k "
                   f"({', '.join(self.when_generators)})" if self.when_generators else "")] + (
            [f"classic augmentation chosen on val: {', '.join(self.candidates)} "
             f"({each(self.classic)} fits)"] if self.classic else [])


def make_plan(study: StudyConfig, sweep: SweepConfig, compose: ComposeConfig,
              families: dict[str, int], set_family: dict[str, str], pool: np.ndarray | None,
              names: list[str] | None, augment: AugmentConfig | None = None,
              when_steps: dict[str, dict[str, int]] | None = None) -> Plan:
    """The units of work of these params. `families`: generator family -> its optimiser steps;
    `set_family`: synthetic set -> its generator family; `pool`: the train pool's class
    counts (None: unknown, then no sweep point is taken as skipped); `augment`: with
    `pipeline: auto`, one fit per candidate and seed (pipeline.experiments.classic_choice);
    `when_steps`: generator tag ("", "unlabelled", "pretrain") -> family -> the steps a when
    point trains it for (generators.pretrain_config.when_family; missing: `families`)."""
    def seeds_at(s: SweepConfig, k: int) -> list[int]:  # as sweep.seeds_at (that module loads torch)
        return s.low_data_seeds if k <= s.low_data_k else s.seeds

    def skip(kind: str, k: int, variant: str = "") -> bool:
        return pool is not None and sweep_skip(kind, k, variant, pool, names or [],
                                               compose) is not None

    cells = {m: len(study.variants) * len(study.seeds) for m in study.models}
    real = sum(len(seeds_at(sweep, k)) for k in sweep.real_per_class
               if not skip("real_per_class", k))
    ratio = len(sweep.ratios) * len(sweep.seeds)
    when_ks = [k for k in sweep.when_per_class if not skip("real_per_class", k)]
    when_n = sum(len(seeds_at(sweep, k)) for k in when_ks for v in sweep.when_variants
                 if not skip("when", k, v))
    retrained: dict[str, int] = {}
    labelled = 0  # when ks whose variants pseudo-label the pool: one fit per k and when model
    for k in when_ks:
        live = [compose.variants[v] for v in sweep.when_variants if not skip("when", k, v)]
        # one training per family and tag (generators.lowdata caches per k and tag)
        for fam, tag in {(set_family[s], c.generator_tag) for c in live
                         for s in c.synthetic_parts() if s in set_family}:
            steps = (when_steps or {}).get(tag, families).get(fam, 0)
            retrained[fam] = retrained.get(fam, 0) + steps
        labelled += any(c.pseudo_labels for c in live)
    semi_n = sum(len(seeds_at(sweep, k)) for k in when_ks for v in sweep.when_variants
                 if compose.variants[v].use.semi_supervised != "none" and not skip("when", k, v))
    auto = augment is not None and augment.pipeline == AUTO
    plan = Plan(cells, {m: real + ratio for m in sweep.models},
                {m: when_n for m in sweep.models if m in sweep.when_models},
                dict(families), retrained,
                {augment.choose_model: len(augment.candidates) * len(augment.choose_seeds)}
                if auto else {}, list(augment.candidates) if auto else [])
    plan.when_semi = {m: semi_n for m in plan.when} if semi_n else {}
    plan.labellers = {m: labelled for m in plan.when} if labelled else {}
    return plan


def with_crossval(plan: Plan, study: StudyConfig, compose: ComposeConfig,
                  families: dict[str, int], set_family: dict[str, str],
                  test: np.ndarray | None, augment: AugmentConfig | None = None) -> Plan:
    """`plan` with the protocol `study.protocol` picks for a test split of `test` images per
    class (None: unknown, taken as holdout under auto) and, under k-fold, the crossval stage's
    fits (folds x repeats units, each every variant x model, and with `augment.pipeline:
    auto` each unit's classic choice) and generator steps (every family the study's
    synthetic parts need, once per unit)."""
    from synthaug.pipeline.experiments.protocol import choose

    if test is None and study.protocol == "auto":
        plan.protocol = "auto (holdout or k-fold: decided once the splits are known)"
        return plan
    protocol, why = choose(study.protocol, test if test is not None else np.array([]))
    plan.protocol = why
    if protocol != "kfold":
        return plan
    units = study.folds * study.repeats
    plan.crossval = {m: units * len(study.variants) for m in study.models}
    cfg = [compose.variants[v] for v in study.variants]
    if augment is not None and augment.pipeline == AUTO and any(
            "classic" in c.parts or c.online_augment == AUTO for c in cfg):
        m = augment.choose_model  # one fit per candidate and seed, in every unit
        plan.crossval[m] = plan.crossval.get(m, 0) + units * len(augment.candidates) * len(
            augment.choose_seeds)
    fams = {set_family[s] for v in study.variants for s in compose.variants[v].synthetic_parts()
            if s in set_family}
    plan.crossval_generators = {f: units * families.get(f, 0) for f in sorted(fams)}
    return plan


def measured_fits(sweep_root: Path, models) -> dict[str, tuple[float, int]]:
    """model -> (mean seconds of one fit, fits) from an earlier sweep's results here."""
    out = {}
    for m in models:
        try:
            rows = json.loads((sweep_root / m / "results.json").read_text())["rows"]
            secs = [float(r["train_seconds"]) for r in rows if r.get("train_seconds")]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if secs:
            out[m] = (sum(secs) / len(secs), len(secs))
    return out


def isa_kind(machine: dict) -> str:
    isa = machine.get("isa") or {}
    if isa.get("amx_bf16") or isa.get("avx512_bf16"):
        return "bf16"
    return "avx512" if isa.get("avx512f") else "avx2"


def estimate(plan: Plan, fit_recipes: dict[str, tuple[int, int, bool]], size: int,
             machine: dict, measured: dict[str, tuple[float, int]]) -> tuple[float, list[str]]:
    """(seconds, lines: the estimate per stage and its basis). `fit_recipes`: model ->
    (samples one fit draws, the side the model sees, transfer model?)."""
    cores = int(machine.get("usable_cores") or machine.get("cores") or 1)
    workers = max(1, min(cores, 4))
    isa = isa_kind(machine)
    slow = ISA_FACTOR[isa]

    def fit(m: str) -> float:
        if m in measured:
            return measured[m][0]
        secs, samples, side = FIT_SECONDS.get(m, FIT_SECONDS[FIT_FALLBACK])
        drawn, seen, _ = fit_recipes[m]
        return secs * drawn / samples * (seen / side) ** 2 * slow

    def spread(total: float, longest: float) -> float:
        return max(total / workers, longest)

    train = spread(sum(n * fit(m) for m, n in plan.cells.items()),
                   max((fit(m) for m in plan.cells), default=0.0))
    side = max(1.0, size / 28)
    gen = {f: steps * STEP_MS[f] / 1000 * side * slow for f, steps in plan.generators.items()}
    gens = spread(sum(gen.values()), max(gen.values(), default=0.0))
    when_gen = sum(steps * STEP_MS[f] / 1000 * side * slow
                   for f, steps in plan.when_generators.items())
    fits = sum(n * fit(m) for d in (plan.sweep, plan.when, plan.labellers) for m, n in d.items())
    fits += sum((SEMI_FIT_COST - 1) * n * fit(m) for m, n in plan.when_semi.items())
    sweep = spread(fits + when_gen, 0.0)
    choice = spread(sum(n * fit(m) for m, n in plan.classic.items()),
                    max((fit(m) for m in plan.classic), default=0.0))
    cv_gen = sum(steps * STEP_MS[f] / 1000 * side * slow
                 for f, steps in plan.crossval_generators.items())
    crossval = spread(sum(n * fit(m) for m, n in plan.crossval.items()) + cv_gen, 0.0)
    total = train + gens + sweep + choice + crossval + OTHER_SECONDS * slow
    basis = [f"{m}: {measured[m][0]:.1f} s a fit, measured here over {measured[m][1]} earlier "
             "sweep fits" for m in measured]
    priced = sorted({*plan.cells, *plan.sweep, *plan.classic} - set(measured))
    if priced or plan.generators:
        basis.append(f"constants measured on {REF_CPU}, scaled by samples and image size"
                     + ("" if isa == "bf16" else f", x{slow} for this CPU's ISA ({isa})")
                     + "".join(f"; {m} priced as {FIT_FALLBACK}" for m in priced
                               if m not in FIT_SECONDS))
    lines = [f"estimate on {machine.get('cpu', '?')}, {cores} core(s), {workers} worker(s): "
             f"about {_minutes(total)} (train {_minutes(train)}, sweep {_minutes(sweep)}, "
             f"generators {_minutes(gens)}, "
             + (f"classic choice {_minutes(choice)}, " if plan.classic else "")
             + (f"crossval {_minutes(crossval)}, " if plan.crossval else "")
             + f"the rest {_minutes(OTHER_SECONDS * slow)})",
             "estimate basis: " + "; ".join(basis)]
    if total > LONG_SECONDS:
        lines.append(long_run_advice(total, {"train": train, "sweep": sweep, "generators": gens,
                                             "crossval": crossval}))
    return total, lines


LONG_SECONDS = 3600.0  # an estimate above this gets the settings that cut it
# the settings that cut each part most, in the order they cost the least quality
CUTS = {"train": "-S 'study.seeds=[0,1,2]' (fewer seeds), -S 'study.models=[cnn]' (no transfer "
                 "model), -S 'study.variants=[real,real+classic,real+vae,more-real]'",
        "sweep": "-S 'sweep.seeds=[0,1,2]', -S 'sweep.when_per_class=[5,10]', "
                 "-S 'sweep.models=[cnn]'",
        "generators": "-S train_generator.gan.steps=1200 (and vae, diffusion), "
                      "-S prepare.size=32 (a smaller image side)",
        "crossval": "-S study.folds=3 (fewer units), -S 'study.models=[cnn]', "
                    "-S 'study.variants=[real,real+classic,real+vae,more-real]'"}


def long_run_advice(total: float, parts: dict[str, float]) -> str:
    """The warning for a study estimated over LONG_SECONDS: its largest parts first, each with
    the `-S` settings that cut it."""
    ranked = sorted(parts.items(), key=lambda kv: -kv[1])
    return (f"warning: about {_minutes(total)} on this machine, over an hour; to cut it: "
            + "; ".join(f"{name} ({_minutes(secs)}): {CUTS[name]}" for name, secs in ranked
                        if secs > 0.1 * total))


def _minutes(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min"


def recipe_samples(epochs: int, epoch_size: int, images: int) -> int:
    """Samples one fit draws: epochs x epoch_size (0: a pass over the `images`)."""
    return int(epochs) * (int(epoch_size) or max(1, int(images)))


def fan_out(plan: Plan, sweep: SweepConfig, compose: ComposeConfig, pool: np.ndarray | None,
            names: list[str] | None, sets: int) -> str:
    """The cells each stage that fans out hands its executor (pipeline.core.executors): one
    per study cell, per sweep job (a point, or the when points of one k whose variants share
    generators or pseudo-labels: pipeline.experiments.sweep_run.groups), per set quality
    scores (`sets`, real-val and noise included) and per generator family."""
    from synthaug.pipeline.data.config import PSEUDO_REAL

    def skip(kind: str, k: int, variant: str = "") -> bool:
        return pool is not None and sweep_skip(kind, k, variant, pool, names or [],
                                               compose) is not None

    when = 0  # jobs of one when model
    for k in sweep.when_per_class:
        live = [] if skip("real_per_class", k) else [v for v in sweep.when_variants
                                                      if not skip("when", k, v)]
        shared = [v for v in live if compose.variants[v].synthetic_parts()
                  or compose.variants[v].unlabelled or PSEUDO_REAL in compose.variants[v].parts]
        seeds = sweep.low_data_seeds if k <= sweep.low_data_k else sweep.seeds
        when += bool(shared) + len(seeds) * (len(live) - len(shared))
    jobs = sum(plan.sweep.values()) + when * len(plan.when)
    return (f"cells per stage (executor.kind slurm or ray: one job or task each): train "
            f"{sum(plan.cells.values())}, sweep {jobs}, quality {sets}, train_generator "
            f"{len(plan.generators)}")
