"""Issue 17, items 2, 6 and 8 (folder sources and prepare): no hang on symbolic-link loops,
FIFOs or sockets; a pixel limit read from the header; 16-bit conversion without int64 copies
of the picture; EXIF orientation; hidden class folders, one-class sets, bad seeds and too
large a train_per_class each said in one line."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tracemalloc

import numpy as np
import pytest
from PIL import Image, ImageOps

from synthaug.pipeline.data.config import PrepareConfig
from synthaug.pipeline.core.errors import SynthaugError
from synthaug.pipeline.data.sources import load_source, read_image, to_array


def write_params(folder, **prepare):
    prepare = {"train_per_class": "null", **prepare}
    lines = ["prepare:"] + [f"  {k}: {v}" for k, v in prepare.items()]
    (folder / "params.yaml").write_text("\n".join(lines) + "\n")


def test_loops_fifos_and_sockets_neither_hang_nor_stop_prepare(image_folder, tmp_path, repo_root):
    root = image_folder(tmp_path / "images", classes=("a", "b"), per_class=6)
    (root / "a" / "x").mkdir()
    os.symlink("../../b", root / "a" / "x" / "to_b")  # a -> b: a second link to b
    os.symlink("..", root / "b" / "up")  # b -> b: a loop
    os.symlink("../a", root / "b" / "up2")  # b -> a -> b ...: a loop through two folders
    os.mkfifo(root / "a" / "pipe.png")  # opening it would block for ever
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(root / "b" / "sock.png"))
    try:
        write_params(tmp_path, source=f"folder:{root}", size=8)
        r = subprocess.run([sys.executable, "-m", "synthaug", "prepare"], cwd=tmp_path,
                           capture_output=True, text=True, timeout=120,
                           env={**os.environ, "PYTHONPATH": str(repo_root)})
    finally:
        sock.close()
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    assert "2 entr(y/ies) that are not regular files" in r.stdout
    assert "a/pipe.png" in r.stdout and "b/sock.png" in r.stdout
    assert "3 folder(s) reached again through a symbolic link" in r.stdout
    assert "12 images, 2 classes" in r.stdout  # each image read once


def test_hidden_class_folders_are_named_in_a_note(image_folder, tmp_path):
    root = image_folder(tmp_path / "images", classes=("a", "b", "..c", ".git"), per_class=4)
    (root / "a" / ".thumbs").mkdir()
    src = load_source(PrepareConfig(source=f"folder:{root}", size=8), "unused")
    assert src.class_names == ["a", "b"]
    note = next(n for n in src.notes if "hidden folder(s)" in n)
    assert note.startswith("3 hidden folder(s) ignored") and "..c" in note and ".git" in note
    assert "a/.thumbs" in note


def test_max_pixels_is_read_from_the_header(tmp_path):
    big = tmp_path / "big.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (200, 300), np.uint8)).save(big)
    cut = tmp_path / "cut.png"
    cut.write_bytes(big.read_bytes()[:400])  # truncated: decoding would fail
    cfg = PrepareConfig(source="folder:x", size=8, max_pixels=50_000)
    for path in (big, cut):
        assert read_image(path, cfg) == ("too large (300 x 200 = 60,000 pixels > "
                                         "prepare.max_pixels 50,000)")
    assert read_image(cut, PrepareConfig(source="folder:x", size=8)) == "truncated"
    no_limit = PrepareConfig(source="folder:x", size=8, max_pixels=None)
    assert read_image(big, no_limit).shape == (8, 8, 1)


def test_too_large_images_follow_on_bad_image(image_folder, tmp_path):
    root = image_folder(tmp_path / "images", classes=("a", "b"), per_class=4, size=(10, 10))
    Image.new("L", (40, 40), 9).save(root / "a" / "huge.png")
    cfg = dict(source=f"folder:{root}", size=8, max_pixels=1000)
    with pytest.raises(SynthaugError, match=r"prepare.on_bad_image: skip.*a/huge.png: too large"):
        load_source(PrepareConfig(**cfg), "unused")
    src = load_source(PrepareConfig(**cfg, on_bad_image="skip"), "unused")
    assert len(src.labels) == 8 and src.bad[0][0] == "a/huge.png"


def test_sixteen_bit_conversion_holds_no_wide_copies():
    w, h = 2000, 1500
    a = np.random.default_rng(0).integers(0, 65536, (h, w), dtype=np.uint16)
    img = Image.fromarray(a)
    assert img.mode.startswith("I;16")
    cfg = PrepareConfig(size=16)
    tracemalloc.start()
    try:
        got = to_array(img, cfg)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # one uint8 copy of the picture plus a band of rows (a few MB); the old code held int64
    # copies of all of it: 18 bytes a pixel
    assert peak < w * h + (2 << 20), peak
    want = ((a.astype(np.int64) * 255 + 32767) // 65535).astype(np.uint8)
    assert np.array_equal(got, to_array(Image.fromarray(want), cfg))


def test_exif_orientation_is_applied(tmp_path):
    px = np.zeros((10, 20), np.uint8)
    px[:, :5] = 255  # a white band on the left of a wide picture
    img = Image.fromarray(px)
    exif = img.getexif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    path = tmp_path / "phone.png"
    img.save(path, exif=exif)
    cfg = PrepareConfig(source="folder:x", size=8, resize="pad")
    got = read_image(path, cfg)
    with Image.open(path) as im:
        assert np.array_equal(got, to_array(ImageOps.exif_transpose(im), cfg))
    assert not np.array_equal(got, to_array(img, cfg))  # upright: the band is now on top
    assert got[1, 4, 0] > 200 and got[6, 4, 0] < 50


def one_line_error(r, *fragments):
    assert r.exit_code == 2, r.output
    assert r.stderr.startswith("error: ") and r.stderr.count("\n") == 1, r.stderr
    for f in fragments:
        assert f in r.stderr, r.stderr


def test_one_class_warns(run_cli, image_folder, tmp_path):
    root = image_folder(tmp_path / "images", classes=("only",), per_class=6)
    write_params(tmp_path, source=f"folder:{root}", size=8)
    r = run_cli(tmp_path, "prepare")
    assert r.exit_code == 0, r.output
    assert "warning: only one class ('only')" in r.output


def test_bad_seed_names_the_seed_before_any_work(run_cli, tmp_path):
    write_params(tmp_path, source="digits", size=8)
    one_line_error(run_cli(tmp_path, "prepare", "-S", "prepare.seed=-1"), "prepare.seed",
                   "4294967295")
    assert not (tmp_path / "data").exists()


def test_train_per_class_too_large_says_how_to_fix(run_cli, image_folder, tmp_path):
    root = image_folder(tmp_path / "images", classes=("a", "b"), per_class=10)
    write_params(tmp_path, source=f"folder:{root}", size=8, train_per_class=50)
    r = run_cli(tmp_path, "prepare")
    one_line_error(r, "prepare.train_per_class: 50 requested", "set it to 7 or less",
                   "or null")


# ---------------------------------------------------------------- issue 31, items 4, 6 and 7

RAMP = np.linspace(0, 1, 64).reshape(8, 8)  # 0 .. 1 over an 8 x 8 picture
WANT = np.rint(RAMP * 255).astype(np.uint8)


@pytest.mark.parametrize("name,pixels,want,rule", [
    ("float in 0..1", RAMP.astype(np.float32), WANT, None),
    ("float in 0..255", (RAMP * 255).astype(np.float32), WANT, None),
    ("float elsewhere", (RAMP * 1000 - 3).astype(np.float32), WANT, "stretch"),
    ("int32 within 16 bits", np.rint(RAMP * 65535).astype(np.int32), WANT, None),
    ("int32 above 16 bits", np.rint(RAMP * (2**31 - 1)).astype(np.int64).astype(np.int32),
     WANT, "int31"),
])
def test_wide_modes_read_by_their_rule(tmp_path, name, pixels, want, rule):
    path = tmp_path / "x.tif"
    Image.fromarray(pixels).save(path)
    with Image.open(path) as im:
        assert im.mode in ("F", "I")
    scaled = {}
    got = read_image(path, PrepareConfig(source="folder:x", size=8), scaled)
    assert np.abs(got[:, :, 0].astype(int) - want).max() <= 1, name  # was all 0 or all 255
    assert scaled == ({rule: 1} if rule else {})


@pytest.mark.parametrize("pixels,reason", [
    (np.where(RAMP > 0.5, np.nan, RAMP).astype(np.float32), "float image (mode F) with NaN"),
    (np.where(RAMP > 0.5, np.inf, RAMP).astype(np.float32), "float image (mode F) with infinite"),
    ((RAMP * 100 - 5).astype(np.int32), "32-bit integer image (mode I) with negative values"),
])
def test_wide_modes_no_rule_converts_are_bad_images_by_name(tmp_path, pixels, reason):
    path = tmp_path / "x.tif"
    Image.fromarray(pixels).save(path)
    assert read_image(path, PrepareConfig(source="folder:x", size=8)).startswith(reason)


def test_value_dependent_rules_are_noted_by_prepare(image_folder, tmp_path):
    root = image_folder(tmp_path / "images", classes=("a", "b"), per_class=3)
    Image.fromarray((RAMP * 1000).astype(np.float32)).save(root / "a" / "wide.tif")
    src = load_source(PrepareConfig(source=f"folder:{root}", size=8), "unused")
    assert len(src.origins) == 7
    assert "1 float image(s) (mode F) with values outside 0..1 and 0..255, stretched" in \
        " ".join(src.notes)


def test_undecodable_names_are_written_as_escapes(run_cli, image_folder, tmp_path):
    root = image_folder(tmp_path / "images", classes=("a", "b"), per_class=6)
    bad_dir = os.fsdecode(bytes(root) + b"/caf\xe9")
    os.rename(root / "b", bad_dir)
    os.rename(os.path.join(bad_dir, "img000.png"), os.fsdecode(os.fsencode(bad_dir) + b"/\xff.png"))
    write_params(tmp_path, source=f"folder:{root}", size=8)
    r = run_cli(tmp_path, "prepare")
    assert r.exit_code == 0, r.output  # was: UnicodeEncodeError writing manifest.csv
    pool = tmp_path / "data" / "prepared"
    text = "".join(p.read_text(encoding="utf-8") for p in pool.rglob("manifest.csv"))
    assert "caf\\xe9" in text and "caf\\xe9/\\xff.png" in text
    meta = json.loads((pool / "train" / "meta.json").read_text())
    assert meta["class_names"] == ["a", "caf\\xe9"]


def test_tilde_in_a_folder_source_is_the_home_folder(image_folder, tmp_path, monkeypatch):
    image_folder(tmp_path / "images", classes=("a", "b"), per_class=3)
    monkeypatch.setenv("HOME", str(tmp_path))
    cfg = PrepareConfig(source="folder:~/images", size=8)
    assert cfg.source == f"folder:{tmp_path}/images"
    assert len(load_source(cfg, "unused").origins) == 6
