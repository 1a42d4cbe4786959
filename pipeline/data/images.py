"""One image -> the configured uint8 array: the conversion and resize policy every source
shares (`to_array`), and reading one image file (`read_image`: the array, or why the file is
bad). Any PIL mode: 16-bit gray over its full range, palettes, alpha composited over
`prepare.background`; EXIF orientation applied; `prepare.max_pixels` checked from the header.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from synthaug.pipeline.data.config import PrepareConfig

# BILINEAR, not LANCZOS: no overshoot halos when upscaling tiny digits, and PIL widens the
# filter when shrinking, so downscaling is still antialiased. Either is deterministic.
RESAMPLE = Image.Resampling.BILINEAR
SIXTEEN_BIT = {"I;16", "I;16L", "I;16B", "I;16N", "I"}
CHUNK_PIXELS = 1 << 16  # 16-bit conversion: pixels scaled at a time (512 KB of int64)


def _to_mode(img: Image.Image, channels: int, background: int) -> Image.Image:
    """Any PIL mode -> "L" or "RGB", alpha composited over a gray `background`."""
    if img.mode in SIXTEEN_BIT:
        img = _sixteen_to_l(img)
    elif img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    elif img.mode in ("PA", "La", "RGBa"):
        img = img.convert("RGBA")
    if img.mode in ("LA", "RGBA"):
        bg = Image.new("RGBA", img.size, (background, background, background, 255))
        img = Image.alpha_composite(bg, img.convert("RGBA"))
    # "1", "CMYK", "YCbCr", "F", ... all have a defined conversion in PIL
    return img.convert("L" if channels == 1 else "RGB")


def _sixteen_to_l(img: Image.Image) -> Image.Image:
    """16-bit gray -> "L" over the full range (PIL's convert("L") clips at 255), a band of rows
    at a time: one uint8 copy of the picture, not several int64 ones (a 12000 x 12000 PNG)."""
    w, h = img.size
    out = np.empty((h, w), np.uint8)
    rows = max(1, CHUNK_PIXELS // max(1, w))
    for top in range(0, h, rows):
        a = np.asarray(img.crop((0, top, w, min(h, top + rows))), dtype=np.int64)
        np.clip(a, 0, 65535, out=a)
        a *= 255
        a += 32767
        a //= 65535
        out[top:top + len(a)] = a
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


def to_array(img: Image.Image, cfg: PrepareConfig) -> np.ndarray:
    """One PIL image -> uint8 size x size x channels, per cfg.channels/size/resize/background."""
    out = _fit(_to_mode(img, cfg.channels, cfg.background), cfg.size, cfg.resize, cfg.background)
    a = np.asarray(out, dtype=np.uint8)
    return a[:, :, None] if a.ndim == 2 else a


def _upright(img: Image.Image) -> Image.Image:
    """Apply the EXIF orientation (phone photos are stored sideways, with a tag to turn them)."""
    if img.getexif().get(ExifTags.Base.Orientation, 1) in (0, 1):
        return img  # no tag (or "as stored"): no copy
    return ImageOps.exif_transpose(img)


def read_image(path: Path, cfg: PrepareConfig) -> np.ndarray | str:
    """The converted image, or the reason it is bad ("truncated", "not an image", ...)."""
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
            return to_array(_upright(img), cfg)
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
