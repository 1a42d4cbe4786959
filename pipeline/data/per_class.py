"""How many training images per class: `prepare.train_per_class` resolved (`auto` from the
train pool's class counts) and checked, shared by `synthaug check` (before any work, on
estimated counts) and prepare (on the real ones), so both say the same."""
from __future__ import annotations

AUTO_K_MAX = 50  # `train_per_class: auto` never keeps more than this many per class


def per_class_shortfall(k: int, class_sizes: list[tuple[str, int]], about: str = "",
                        fix: str | None = None) -> str | None:
    """The one feasibility check of `prepare.train_per_class` against the train pool's
    (class name, images) sizes, shared by `check` (before any work; `about`: "about " for an
    estimate; `fix`: its advice, which knows the study) and prepare: the complaint naming the
    smallest class, or None when every class can give k."""
    small, n = min(class_sizes, key=lambda s: s[1])
    if n >= k:
        return None
    if fix is None:
        fix = (f"set it to {n} or less, or " if n else "set it to ") + \
            "null to keep every training image (or auto)"
    return (f"prepare.train_per_class: {k} requested but class {small!r} has only {about}{n} "
            f"training image(s); {fix}")


def resolve_train_per_class(setting: int | str | None, class_sizes: list[tuple[str, int]],
                            about: str = "") -> tuple[int | None, str]:
    """(k, one line saying why) for `prepare.train_per_class` = `setting` on a train pool of
    (class name, images) sizes (`about`: "about " for an estimate). `auto`: k = min(50, half
    the smallest class), at least 1, so the held-back pool (the `more-real` positive control,
    drawn at ratio 1) holds at least as many images per class as the train split; on mnist5k
    (350 per class) that is 50."""
    if setting is None:
        return None, "prepare.train_per_class: null keeps every training image (no held-back pool)"
    if setting != "auto":
        return int(setting), f"prepare.train_per_class: {int(setting)} as set"
    small, n = min(class_sizes, key=lambda s: s[1])
    k = max(1, min(AUTO_K_MAX, n // 2))
    rule = (f"at most {AUTO_K_MAX}" if k == AUTO_K_MAX and n // 2 > AUTO_K_MAX
            else f"half the smallest class, {small!r} with {about}{n} in the train pool")
    return k, (f"prepare.train_per_class: auto chose k={k} per class ({rule}), leaving "
               f"{about}{n - k} or more per class held back for the more-real control")
