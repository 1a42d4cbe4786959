"""`synthaug check`: every problem that the params and the data's class counts show before
any work, each as one line that names the parameter and the fix, all at once (a 38-minute
study should not stop in its last stage over a sweep size).

What is checked, against the train pool's class counts (pipeline.data.counts):
- `prepare.train_per_class` against the smallest class;
- every study variant's drawn parts (`ratio` / `per_class`) against what they will hold: a
  synthetic set `sample.per_class` (or the set's own) images per class, `more-real` the pool
  beyond the train split (and it needs `prepare.train_per_class`);
- the sweep's ratio points, and the synthetic parts of its when points, the same way;
- sweep sizes (`sweep.real_per_class`, `sweep.when_per_class`): a k above the smallest class
  is no error but skipped with a note (`sweep_skip`, which the sweep itself applies too);
- every layer-list model the params train (`model_fit`): its shapes at prepare.size and
  prepare.channels, torch-free (pipeline.classifiers.shapes), in the words `train` would use.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from synthaug.pipeline.classifiers.architectures import BUILTIN
from synthaug.pipeline.classifiers.names import model_kind
from synthaug.pipeline.classifiers.shapes import TooSmall, too_small, walk, with_head
from synthaug.pipeline.core.errors import SynthaugError
from synthaug.pipeline.data.config import ComposeConfig, PrepareConfig, VariantConfig
from synthaug.pipeline.data.per_class import per_class_shortfall, resolve_train_per_class
from synthaug.pipeline.data.counts import PoolCounts
from synthaug.pipeline.experiments.config import StudyConfig, SweepConfig


@dataclass
class Findings:
    problems: list[str] = field(default_factory=list)  # each stops the run: "<param>: ...; fix"
    notes: list[str] = field(default_factory=list)  # defaults taken, estimates, skips
    k: int | None = None  # prepare.train_per_class as prepare will resolve it (None: all / unknown)


def _cls(names: list[str] | None, c: int) -> str:
    return f"class {names[c]!r}" if names else "each class"


def drawn(cfg: VariantConfig, real_counts: np.ndarray) -> dict[str, np.ndarray] | None:
    """Images per class each drawn part of a variant takes (None: every image of each set)."""
    from synthaug.pipeline.data.compose import synthetic_counts

    counts = synthetic_counts(cfg, real_counts)
    return None if counts is None else dict(zip(cfg.drawn_parts(), counts))


def sweep_skip(kind: str, k: int, variant: str, pool: np.ndarray, names: list[str],
               compose: ComposeConfig) -> str | None:
    """Why the sweep skips its `kind` ("real_per_class" | "when") point at k per class (for a
    when point, of `variant`), given the train pool's class counts; None: the pool has room."""
    c = int(np.argmin(pool))
    if k > pool[c]:
        return (f"k={k} images per class, but {_cls(names, c)} of the train pool has only "
                f"{int(pool[c])}")
    cfg = compose.variants[variant] if kind == "when" else None
    need = drawn(cfg, np.full(len(pool), k)) if cfg is not None else None
    for part in _held_back(cfg) if need is not None else []:
        rest = pool - k
        if (bad := np.flatnonzero(need[part] > rest)).size:
            c = int(bad[0])
            return (f"{variant} at k={k} needs {int(need[part][c])} held-back images of "
                    f"{_cls(names, c)} ({part}) but the train pool has {int(rest[c])} beyond the k")
    return None


def _held_back(cfg: VariantConfig) -> list[str]:
    """The drawn parts made of held-back real pool images (more-real and the like)."""
    return [p for p in cfg.drawn_parts() if p not in cfg.synthetic_parts()]


def _parts(where: str, fix: str, cfg: VariantConfig, real: np.ndarray, names, sizes: dict,
           more_real: np.ndarray | None) -> list[str]:
    """Problems of one composition: each drawn part against what it will hold (more-real only
    given `more_real`, the pool's images beyond the train split per class)."""
    out = []
    for part, n in (drawn(cfg, real) or {}).items():
        held_back = part not in cfg.synthetic_parts()
        if held_back and more_real is None or not held_back and part not in sizes:
            continue  # named elsewhere (no pool at all), or the counts are unknown
        have = more_real if held_back else np.full(len(n), sizes[part])
        if not (bad := np.flatnonzero(n > have)).size:
            continue
        c = int(bad[0])
        if held_back:
            what, how = f"the train pool has {int(have[c])} beyond the train split", fix
        else:
            gate = ", before the quality gate" if cfg.gate else ""
            what = f"the set holds {int(have[c])} (sample.per_class{gate})"
            how = (f"draw at least {int(n.max())} (sample.per_class or "
                   f"sample.sets.{part}.per_class), or {fix}")
        out.append(f"{where}: part {part!r} needs {int(n[c])} images of {_cls(names, c)} "
                   f"but {what}; {how}")
    return out


def check(prepare: PrepareConfig, compose: ComposeConfig, study: StudyConfig,
          sweep: SweepConfig, set_sizes: dict[str, int], counts: PoolCounts | None) -> Findings:
    """Every problem and note of these params against the pool's class `counts` (None:
    unknown, then only what the params alone show). `set_sizes`: synthetic set -> images per
    class it will hold."""
    f, setting = Findings(), prepare.train_per_class
    k = None if setting in (None, "auto") else int(setting)
    names = counts.class_names if counts else None
    if counts is None:
        f.notes.append("the train pool's class sizes are not known before `synthaug prepare` "
                       "has run for this source: run `synthaug check` again after it"
                       + (" (prepare.train_per_class: auto picks k then)" if setting == "auto"
                          else ""))
        real = np.array([k]) if k is not None else None
    else:
        small, n = counts.smallest()
        about = "" if counts.exact else "about "
        sizes = list(zip(names, (int(c) for c in counts.pool)))
        f.notes.append(f"train pool: {len(names)} classes, the smallest {small!r} with {about}{n} "
                       f"images ({counts.where})")
        if len(names) == 1:
            f.notes.append(f"only one class ({names[0]!r}): a classifier has nothing to tell "
                           "apart; add a sub-folder per class to the source")
        if setting == "auto":
            k, why = resolve_train_per_class(setting, sizes, about)
            f.notes.append(why)
        if k is not None and k > n:
            f.problems.append(per_class_shortfall(k, sizes, about, _fix_k(
                counts.pool, compose, study, set_sizes)))
        real = counts.pool if k is None else np.minimum(counts.pool, k)
    f.k = k
    more = None if counts is None or k is None else counts.pool - real
    for v in study.variants:
        cfg = compose.variants[v]
        if (held := _held_back(cfg)) and k is None and setting is None:
            auto = ("" if counts is None else " (here k="
                    f"{resolve_train_per_class('auto', list(zip(names, counts.pool)))[0]})")
            f.problems.append(f"compose.variants.{v}: part {held[0]!r} needs the held-back train "
                              "pool, which prepare writes only when prepare.train_per_class thins "
                              f"the train split; set it to auto{auto} or drop the variant from "
                              "study.variants")
        elif real is not None:
            f.problems += _parts(f"compose.variants.{v}", _fix_variant(
                v, cfg, counts, setting, set_sizes), cfg, real, names, set_sizes,
                None if k is not None and counts is not None and k > n else more)
    base = compose.variants[sweep.ratio_variant]
    for r in sweep.ratios if real is not None else []:
        cfg = base.model_copy(update={"ratio": float(r)})
        f.problems += _parts(f"sweep.ratios: {r:g} ({sweep.ratio_variant})",
                             "lower sweep.ratios", cfg, real, names, set_sizes, None)
    for kk in sweep.when_per_class if sweep.when_models else []:
        if counts is not None and kk > counts.smallest()[1]:
            continue  # skipped (a note below)
        for v in sweep.when_variants:  # their synthetic sets: drawn from generators per k
            f.problems += _parts(f"sweep.when_variants: {v} at k={kk}", "drop the variant from "
                                 "sweep.when_variants", compose.variants[v],
                                 np.full(len(names or [0]), kk), names, set_sizes, None)
    if counts is not None:
        f.notes += _sweep_notes(sweep, counts, compose)
    return f


def _max_k(pool: np.ndarray, variants: list[VariantConfig], set_sizes: dict) -> int:
    """The largest k per class that the pool gives and that leaves every held-back part of
    `variants` enough images beyond the train split (0: none)."""
    def fits(k: int) -> bool:
        real = np.minimum(pool, k)
        return all(not _parts("", "", cfg, real, None, set_sizes, pool - real)
                   for cfg in variants if _held_back(cfg))

    lo, hi = 0, int(pool.min())  # fits() only gets harder as k grows: bisect
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid - 1)
    return lo


def _fix_variant(v: str, cfg: VariantConfig, counts: PoolCounts | None, setting,
                 set_sizes: dict) -> str:
    """The advice for a variant whose drawn parts the data cannot fill."""
    lower = f"lower compose.variants.{v}.ratio (or per_class)"
    if counts is None or not _held_back(cfg):
        return lower
    top = _max_k(counts.pool, [cfg], set_sizes)
    if not top:
        return f"{lower}, or drop {v!r} from study.variants"
    return (f"set prepare.train_per_class to {top} or less"
            + ("" if setting == "auto" else " (or auto)") + f", or {lower}")


def _fix_k(pool: np.ndarray, compose: ComposeConfig, study: StudyConfig, set_sizes: dict) -> str:
    """Advice for a train_per_class above the smallest class that works when followed: a k
    the held-back parts of the study's variants leave room for, or auto."""
    variants = [compose.variants[v] for v in study.variants]
    top = _max_k(pool, variants, set_sizes)
    held = any(_held_back(cfg) for cfg in variants)
    return (f"set it to {top} or less" if top else "drop the more-real variants") + \
        (" (the held-back more-real part needs the rest), or auto" if held
         else ", or auto, or null to keep every training image")


def _sweep_notes(sweep: SweepConfig, counts: PoolCounts, compose: ComposeConfig) -> list[str]:
    """The sweep points the pool cannot give: skipped, each with a note."""
    out, pool, names = [], counts.pool, counts.class_names
    for k in sweep.real_per_class:
        if why := sweep_skip("real_per_class", k, "", pool, names, compose):
            out.append(f"sweep.real_per_class: {k} is skipped ({why}); the sweep runs the rest")
    for k in sweep.when_per_class if sweep.when_models else []:
        if sweep_skip("real_per_class", k, "", pool, names, compose):
            out.append(f"sweep.when_per_class: {k} is skipped (above the smallest class)")
            continue
        for v in sweep.when_variants:
            if why := sweep_skip("when", k, v, pool, names, compose):
                out.append(f"sweep.when_per_class: {v} at {k} is skipped ({why})")
    return out


def model_fit(models: dict[str, str], custom: dict[str, list], prepare: PrepareConfig,
              classes: int = 10) -> list[str]:
    """A problem for each built-in or custom layer-list model of `models` (name -> the setting
    that names it) that cannot run on prepare's images (too small for its pools, a dense layer
    on image maps, ...): found from the shapes alone, no torch. Transfer models resize their
    input inside, so any size is theirs."""
    shape, problems = (prepare.channels, prepare.size, prepare.size), []
    for name, where in models.items():
        kind = model_kind(name, custom)
        if kind not in ("builtin", "custom"):
            continue
        layers = with_head(BUILTIN[name](shape) if kind == "builtin" else custom[name], classes)
        try:
            walk(layers, shape)
        except TooSmall as e:
            problems.append(f"{where}: {too_small(e, layers, shape, name)}")
        except SynthaugError as e:
            problems.append(f"{where}: model {name!r} at prepare.size {prepare.size}: {e}")
    return problems
