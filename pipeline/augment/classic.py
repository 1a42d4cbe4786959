"""Classic augmentation: albumentations specs from params, presets, and torchvision policies.

A spec is a preset name (`light`, `medium`, `heavy`, `randaugment`, `trivialaugment`,
`autoaugment`, `augmix`) or a list of steps `{transform: <Name>, **arguments}`, where Name is an
albumentations transform (`OneOf` / `SomeOf` / `Sequential` take a nested `transforms:` list) or
one of torchvision's policies (RandAugment, TrivialAugmentWide, AutoAugment, AugMix).
`build_augmenter` validates everything before any work: unknown names get the closest names,
unknown or bad arguments albumentations' own reason plus the step's position, and every step is
tried once on an image of the real shape.

Randomness: an `Augmenter` owns its generators (albumentations' per-object RNGs; a forked torch
RNG for the torchvision policies) and is re-seeded with `reseed(seed)` by the caller, so results
depend only on the seed, never on a global RNG or on which process ran them.
"""
from __future__ import annotations

import difflib
import inspect
import os
from typing import Any

import numpy as np

from synthaug.pipeline.augment.config import AUGMENT_PRESETS
from synthaug.pipeline.core.errors import SynthaugError

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

TORCHVISION_POLICIES = {"RandAugment": "RandAugment", "TrivialAugmentWide": "TrivialAugmentWide",
                        "AutoAugment": "AutoAugment", "AugMix": "AugMix"}
POLICY_PRESETS = {"randaugment": "RandAugment", "trivialaugment": "TrivialAugmentWide",
                  "autoaugment": "AutoAugment", "augmix": "AugMix"}
COMPOSES = ("OneOf", "SomeOf", "Sequential")
# Transforms that need inputs a labelled image set does not have (boxes, masks, reference
# images, volumes) or that are abstract.
_UNUSABLE = {"BasicTransform", "DualTransform", "ImageOnlyTransform", "Transform3D", "Lambda",
             "FDA", "HistogramMatching", "PixelDistributionAdaptation", "TemplateTransform",
             "Mosaic", "OverlayElements", "TextImage", "MaskDropout", "ConstrainedCoarseDropout",
             "NoOp"}


def _color(natural: bool, strength: float, p: float) -> dict:
    """Colour jitter for natural images, brightness/contrast for gray ones."""
    if natural:
        return {"transform": "ColorJitter", "brightness": strength, "contrast": strength,
                "saturation": strength, "hue": strength / 8, "p": p}
    return {"transform": "RandomBrightnessContrast", "brightness_limit": strength,
            "contrast_limit": strength, "p": p}


def preset_steps(name: str, channels: int) -> list[dict]:
    """The steps of a preset. Digits and other 1-channel images are never flipped (a flipped
    digit is another symbol); 3-channel natural images get flips and colour changes."""
    if name in POLICY_PRESETS:
        return [{"transform": POLICY_PRESETS[name]}]
    natural = channels == 3
    flip = [{"transform": "HorizontalFlip", "p": 0.5}] if natural else []
    if name == "light":
        return flip + [
            {"transform": "Affine", "rotate": [-8, 8], "scale": [0.95, 1.05],
             "translate_percent": [-0.05, 0.05], "p": 0.8},
        ]
    if name == "medium":
        return flip + [
            {"transform": "Affine", "rotate": [-12, 12], "scale": [0.9, 1.1],
             "translate_percent": [-0.08, 0.08], "shear": [-8, 8], "p": 0.9},
            {"transform": "ElasticTransform", "alpha": 20, "sigma": 4, "p": 0.3},
            {"transform": "GaussNoise", "std_range": [0.02, 0.08], "p": 0.3},
            _color(natural, 0.2, 0.5),
            {"transform": "CoarseDropout", "num_holes_range": [1, 2],
             "hole_height_range": [0.1, 0.25], "hole_width_range": [0.1, 0.25], "p": 0.3},
        ]
    if name == "heavy":
        return flip + [
            {"transform": "Affine", "rotate": [-20, 20], "scale": [0.8, 1.15],
             "translate_percent": [-0.12, 0.12], "shear": [-15, 15], "p": 1.0},
            {"transform": "OneOf", "p": 0.6, "transforms": [
                {"transform": "ElasticTransform", "alpha": 34, "sigma": 4},
                {"transform": "GridDistortion", "distort_limit": 0.3},
                {"transform": "OpticalDistortion", "distort_limit": 0.3}]},
            {"transform": "OneOf", "p": 0.5, "transforms": [
                {"transform": "GaussNoise", "std_range": [0.04, 0.15]},
                {"transform": "GaussianBlur", "blur_limit": [3, 5]},
                {"transform": "MotionBlur", "blur_limit": [3, 5]}]},
            _color(natural, 0.35, 0.7),
            {"transform": "CoarseDropout", "num_holes_range": [1, 3],
             "hole_height_range": [0.1, 0.3], "hole_width_range": [0.1, 0.3], "p": 0.5},
        ]
    raise SynthaugError(f"unknown augmentation preset {name!r}; allowed: {', '.join(AUGMENT_PRESETS)}")


def _albumentations():
    import albumentations as A
    import cv2

    # OpenCV's thread pool does not survive fork() (workers hang on it), and on small images
    # threads cost more than they give: the parallelism here is processes.
    cv2.setNumThreads(1)
    return A


def usable_transforms() -> list[str]:
    """Names of albumentations transforms that work on a plain labelled image."""
    A = _albumentations()
    from albumentations.core.transforms_interface import BasicTransform

    return sorted(n for n in dir(A) if not n.startswith("_") and isinstance(getattr(A, n), type)
                  and issubclass(getattr(A, n), BasicTransform) and n not in _UNUSABLE
                  and not n.endswith("3D") and "BBox" not in n)


def _suggest(name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
    lower = [k for k in known if name.lower() in k.lower() and k not in close]
    hints = close + lower[:3 - len(close)]
    return f"; did you mean {', '.join(hints)}?" if hints else ""


def _reason(e: Exception) -> str:
    """albumentations' own reason, on one line (pydantic errors are multi-line)."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    if len(lines) >= 3 and "validation error" in lines[0]:
        return f"{lines[1]}: {lines[2].split(' [type=')[0]}"
    return lines[0] if lines else type(e).__name__


def _make(step: Any, where: str, known: list[str]):
    """One albumentations object from a step dict (recursing into compositions)."""
    A = _albumentations()
    if not isinstance(step, dict) or not isinstance(step.get("transform"), str):
        raise SynthaugError(f"{where}: expected a mapping with `transform: <Name>`, got {step!r}")
    args = {k: v for k, v in step.items() if k != "transform"}
    name = step["transform"]
    if name in TORCHVISION_POLICIES:
        raise SynthaugError(f"{where}: {name} is a torchvision policy; it cannot sit inside "
                            f"{', '.join(COMPOSES)}")
    if name in COMPOSES:
        inner = args.pop("transforms", None)
        if not isinstance(inner, list) or not inner:
            raise SynthaugError(f"{where} ({name}): needs a non-empty `transforms:` list")
        args["transforms"] = [_make(s, f"{where}.transforms[{i}]", known)
                              for i, s in enumerate(inner)]
    elif name not in known:
        raise SynthaugError(f"{where}: unknown transform {name!r}{_suggest(name, known + list(COMPOSES) + list(TORCHVISION_POLICIES))}")
    cls = getattr(A, name)
    allowed = set(inspect.signature(cls.__init__).parameters) - {"self", "args", "kwargs"}
    bad = sorted(set(args) - allowed)
    if bad:  # albumentations only warns about these; a silently ignored typo is worse
        raise SynthaugError(f"{where} ({name}): unknown argument {bad[0]!r}"
                            f"{_suggest(bad[0], sorted(allowed))}")
    try:
        return cls(**args)
    except Exception as e:  # noqa: BLE001 - albumentations raises ValueError/TypeError/pydantic
        raise SynthaugError(f"{where} ({name}): {_reason(e)}") from None


class _Policy:
    """A torchvision auto-augment policy on one H x W x C uint8 image, with its own RNG."""

    def __init__(self, name: str, args: dict, where: str):
        from torchvision.transforms import v2

        try:
            self.op = getattr(v2, name)(**args)
        except Exception as e:  # noqa: BLE001
            raise SynthaugError(f"{where} ({name}): {_reason(e)}") from None
        self.name, self.args, self.seed = name, args, 0

    def __call__(self, image: np.ndarray) -> np.ndarray:
        import torch

        # fork_rng: the policy draws from torch's global RNG; keep the caller's stream untouched
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            out = self.op(torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1))
            self.seed = int(torch.randint(0, 2**62, ()).item())  # next image, next draw
        return out.permute(1, 2, 0).numpy()


class Augmenter:
    """A validated pipeline: `aug(image)` -> augmented uint8 H x W x C image of the same shape."""

    def __init__(self, spec: str | list, steps: list[tuple[str, Any]]):
        self.spec, self.steps = spec, steps

    def reseed(self, seed: int) -> None:
        for i, (kind, obj) in enumerate(self.steps):
            step_seed = int(np.random.SeedSequence([seed, i]).generate_state(1)[0])
            if kind == "albumentations":
                obj.set_random_seed(step_seed)
            else:
                obj.seed = step_seed

    def __call__(self, image: np.ndarray) -> np.ndarray:
        for kind, obj in self.steps:
            image = obj(image=image)["image"] if kind == "albumentations" else obj(image)
        if image.ndim == 2:  # a few OpenCV paths drop the channel axis of 1-channel images
            image = image[..., None]
        return image

    def describe(self) -> dict:
        """What was run, resolved: albumentations' own `to_dict` plus the policies' arguments."""
        A = _albumentations()
        resolved = [A.to_dict(obj)["transform"] if kind == "albumentations"
                    else {"__class_fullname__": f"torchvision.transforms.v2.{obj.name}", **obj.args}
                    for kind, obj in self.steps]
        return {"spec": self.spec, "resolved": resolved,
                "albumentations_version": A.__version__}


def build_augmenter(spec: str | list, shape: tuple[int, int, int], where: str = "augment.pipeline",
                    seed: int = 0) -> Augmenter:
    """Validate `spec` for C x H x W uint8 images and build its Augmenter (seeded with `seed`)."""
    steps_spec = preset_steps(spec, shape[0]) if isinstance(spec, str) else spec
    if isinstance(spec, str):
        where = f"{where} (preset {spec})"
    if not isinstance(steps_spec, list) or not steps_spec:
        raise SynthaugError(f"{where}: expected a preset name or a non-empty list of steps")
    A = _albumentations()
    known = usable_transforms()
    c, h, w = shape
    probe = np.random.default_rng(0).integers(0, 256, (h, w, c), dtype=np.uint8)
    steps: list[tuple[str, Any]] = []
    group: list = []
    for i, step in enumerate(steps_spec):
        here = f"{where}[{i}]"
        name = step.get("transform") if isinstance(step, dict) else None
        if name in TORCHVISION_POLICIES:
            if group:
                steps.append(("albumentations", A.Compose(group)))
                group = []
            steps.append(("torchvision", _Policy(name, {k: v for k, v in step.items()
                                                        if k != "transform"}, here)))
            obj = steps[-1][1]
        else:
            obj = _make(step, here, known)
            group.append(obj)
        _try(obj, probe, here, name, shape)
    if group:
        steps.append(("albumentations", A.Compose(group)))
    aug = Augmenter(spec, steps)
    aug.reseed(seed)
    return aug


def _try(obj, probe: np.ndarray, where: str, name: str, shape) -> None:
    """Run one step with p=1 on an image of the real shape; it must keep the shape and dtype."""
    import warnings

    c, h, w = shape
    try:
        # a UserWarning on a well-formed image means misuse (e.g. hue shifts on grayscale)
        with warnings.catch_warnings():
            warnings.simplefilter("error", UserWarning)
            out = _probe(obj, probe)
    except Exception as e:  # noqa: BLE001
        raise SynthaugError(f"{where} ({name}): fails on {c}-channel {h}x{w} images: "
                            f"{_reason(e)}") from None
    out = out[..., None] if out.ndim == 2 else out
    if out.shape != probe.shape or out.dtype != np.uint8:
        raise SynthaugError(f"{where} ({name}): turns {h}x{w}x{c} uint8 images into "
                            f"{'x'.join(map(str, out.shape))} {out.dtype}; augmentation must keep "
                            "the size (set its size/height/width to the data's)")


def _probe(obj, probe: np.ndarray) -> np.ndarray:
    if isinstance(obj, _Policy):
        return obj(probe)
    p, obj.p = obj.p, 1.0
    try:
        obj.set_random_seed(0)
        return obj(image=probe)["image"]
    finally:
        obj.p = p
