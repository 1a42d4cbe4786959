"""One image -> the configured uint8 array: the conversion and resize policy every source
shares (`to_array`), and reading one image file (`read_image`: the array, or why the file is
bad). Any PIL mode: palettes, alpha composited over `prepare.background`; EXIF orientation
applied; `prepare.max_pixels` checked from the header. Wide gray modes by one rule each
(`wide_rule`): 16-bit (I;16*, and 32-bit "I" whose values fit 0..65535) over 0..65535; "I" with
larger values over 0..2^31-1; float "F" with values in 0..1 times 255, in 0..255 as they are,
otherwise stretched from the image's own minimum..maximum. Negative integers and NaN or
infinite floats are refused by name. A rule that depends on the image's values is counted in
the caller's `scaled` tally so prepare can say so.
"""
from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from synthaug.pipeline.core.errors import SynthaugError
from synthaug.pipeline.data.config import PrepareConfig

# BILINEAR, not LANCZOS: no overshoot halos when upscaling tiny digits, and PIL widens the
# filter when shrinking, so downscaling is still antialiased. Either is deterministic.
RESAMPLE = Image.Resampling.BILINEAR
WIDE = {"I;16", "I;16L", "I;16B", "I;16N", "I", "F"}
CHUNK_PIXELS = 1 << 16  # wide-mode conversion: pixels scaled at a time (512 KB of int64)
INT31 = 2 ** 31 - 1
# the value-dependent rules, as prepare's note words them (key: what `wide_rule` returns)
NOTED = {
    "int31": "32-bit integer image(s) (mode I) with values above 65535, scaled from 0..2^31-1",
    "stretch": "float image(s) (mode F) with values outside 0..1 and 0..255, stretched from "
               "each image's own minimum..maximum to 0..255",
}


class PixelError(SynthaugError):
    """Pixel values no rule converts (negative integers, NaN or infinite floats)."""


def wide_rule(mode: str, lo: float, hi: float) -> str:
    """The rule for a wide gray image of `mode` whose values span lo..hi: "int16", "int31",
    "unit" (floats x 255), "byte" (floats kept) or "stretch"; PixelError if none applies."""
    if mode != "F":
        if lo < 0:
            raise PixelError(f"32-bit integer image (mode {mode}) with negative values "
                             f"(minimum {lo}): convert it to 8 or 16 bits")
        return "int16" if hi <= 65535 else "int31"
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise PixelError("float image (mode F) with infinite values")
    if lo >= 0 and hi <= 1:
        return "unit"
    return "byte" if lo >= 0 and hi <= 255 else "stretch"


def _to_mode(img: Image.Image, channels: int, background: int,
             scaled: dict | None = None) -> Image.Image:
    """Any PIL mode -> "L" or "RGB", alpha composited over a gray `background`."""
    if img.mode in WIDE:
        img = _wide_to_l(img, scaled)
    elif img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    elif img.mode in ("PA", "La", "RGBa"):
        img = img.convert("RGBA")
    if img.mode in ("LA", "RGBA"):
        bg = Image.new("RGBA", img.size, (background, background, background, 255))
        img = Image.alpha_composite(bg, img.convert("RGBA"))
    # "1", "CMYK", "YCbCr", "F", ... all have a defined conversion in PIL
    return img.convert("L" if channels == 1 else "RGB")


def _scaler(rule: str, lo: float, hi: float):
    """chunk (int64 or float64, scaled in place where it can) -> its uint8 values."""
    if rule == "int16" or rule == "int31":
        top = 65535 if rule == "int16" else INT31

        def scale(a):
            np.clip(a, 0, top, out=a)
            a *= 255
            a += top // 2
            a //= top
            return a
        return scale
    if rule == "stretch":
        span = hi - lo

        def scale(a):
            a -= lo
            if span > 0:
                a *= 255.0 / span
            else:
                a[...] = 0
            return np.rint(a, out=a)
        return scale

    def scale(a):  # unit or byte
        if rule == "unit":
            a *= 255.0
        return np.rint(a, out=a)
    return scale


def _wide_to_l(img: Image.Image, scaled: dict | None) -> Image.Image:
    """Wide gray -> "L" by `wide_rule` (PIL's convert("L") clips at 255: a 0..1 float image
    would read black), a band of rows at a time: one uint8 copy of the picture, not several
    wide ones (a 12000 x 12000 PNG)."""
    if img.mode.startswith("I;16"):
        rule, lo, hi = "int16", 0, 65535
    else:
        lo, hi = img.getextrema()  # in C, no copy; NaN is skipped here, caught below
        rule = wide_rule(img.mode, lo, hi)
    scale = _scaler(rule, lo, hi)
    wide = np.float64 if img.mode == "F" else np.int64
    w, h = img.size
    out = np.empty((h, w), np.uint8)
    rows = max(1, CHUNK_PIXELS // max(1, w))
    for top in range(0, h, rows):
        a = np.asarray(img.crop((0, top, w, min(h, top + rows))), dtype=wide)
        if wide is np.float64 and np.isnan(a).any():
            raise PixelError("float image (mode F) with NaN values")
        out[top:top + len(a)] = scale(a)
    if scaled is not None and rule in NOTED:
        scaled[rule] = scaled.get(rule, 0) + 1
    return Image.frombuffer("L", (w, h), out, "raw", "L", 0, 1)  # shares `out`: no copy


def _fit(img: Image.Image, size: int, policy: str, background: int) -> Image.Image:
    w, h = img.size
    if (w, h) == (size, size):
        return img
    if policy == "resize":
        return img.resize((size, size), RESAMPLE)
    if policy == "center_crop":
        side = min(w, h)  # resample straight from the central square: one interpolation
        left, top = (w - side) / 2, (h - side) / 2
        return img.resize((size, size), RESAMPLE, box=(left, top, left + side, top + side))
    # pad: fit inside, keep the aspect ratio, centre on a background canvas
    scale = size / max(w, h)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    fill = background if img.mode == "L" else (background,) * 3
    canvas = Image.new(img.mode, (size, size), fill)
    canvas.paste(img.resize((nw, nh), RESAMPLE), ((size - nw) // 2, (size - nh) // 2))
    return canvas


def to_array(img: Image.Image, cfg: PrepareConfig, scaled: dict | None = None) -> np.ndarray:
    """One PIL image -> uint8 size x size x channels, per cfg.channels/size/resize/background.
    A value-dependent wide-mode rule used is counted in `scaled` (rule -> images); pixels no
    rule converts raise PixelError."""
    out = _fit(_to_mode(img, cfg.channels, cfg.background, scaled), cfg.size, cfg.resize,
               cfg.background)
    a = np.asarray(out, dtype=np.uint8)
    return a[:, :, None] if a.ndim == 2 else a


def _upright(img: Image.Image) -> Image.Image:
    """Apply the EXIF orientation (phone photos are stored sideways, with a tag to turn them)."""
    if img.getexif().get(ExifTags.Base.Orientation, 1) in (0, 1):
        return img  # no tag (or "as stored"): no copy
    return ImageOps.exif_transpose(img)


def read_image(path: Path, cfg: PrepareConfig, scaled: dict | None = None) -> np.ndarray | str:
    """The converted image, or the reason it is bad ("truncated", "not an image", ...);
    `scaled` as in `to_array`."""
    try:
        with warnings.catch_warnings():  # prepare.max_pixels is the guard; PIL's warning is noise
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(path)
        with img:
            w, h = img.size  # from the header: nothing is decoded yet
            if cfg.max_pixels is not None and w * h > cfg.max_pixels:
                return (f"too large ({w} x {h} = {w * h:,} pixels > prepare.max_pixels "
                        f"{cfg.max_pixels:,})")
            img.load()  # decode now: truncation only shows up here
            return to_array(_upright(img), cfg, scaled)
    except PixelError as e:
        return str(e)
    except UnidentifiedImageError:
        return "not an image"
    except PermissionError:
        return "unreadable (permission denied)"
    except Image.DecompressionBombError:
        return "too large (decompression bomb guard)"
    except (OSError, EOFError, SyntaxError, ValueError) as e:
        if "truncat" in str(e).lower() or isinstance(e, EOFError):
            return "truncated"
        return f"unreadable ({type(e).__name__}: {e})" if str(e) else "unreadable"
