"""Training patches: formats, alignment with the protocol's bicubic, augmentation, determinism, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from subpixel.imageio import write_image
from subpixel.sr.data import PatchDataset, list_images, prepare_image, to_model_channels
from subpixel.sr.protocol import imresize, quantize_uint8, to_y


def smooth_image(rng: np.random.Generator, h: int, w: int, c: int) -> np.ndarray:
    """A random smooth image in [0, 1] (low-frequency noise upscaled, so patches are distinguishable)."""
    small = rng.random((h // 4 + 2, w // 4 + 2, c))
    big = imresize(small, output_shape=(h + 8, w + 8))[4 : 4 + h, 4 : 4 + w]
    return np.clip(big + 0.05 * rng.random((h, w, c)), 0, 1)


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    folder = tmp_path / "hr"
    folder.mkdir()
    write_image(folder / "a.png", smooth_image(rng, 40, 52, 3))
    write_image(folder / "b.bmp", smooth_image(rng, 37, 45, 3))
    write_image(folder / "c.jpg", smooth_image(rng, 33, 41, 3))
    write_image(folder / "d.tif", smooth_image(rng, 36, 36, 3), bit_depth=16)
    write_image(folder / "e.png", smooth_image(rng, 34, 39, 1))  # grayscale
    write_image(folder / "f.png", smooth_image(rng, 35, 38, 3), bit_depth=16)
    (folder / "notes.txt").write_text("not an image, ignored by extension")
    return folder


def test_list_images(image_folder: Path, tmp_path: Path) -> None:
    names = [p.name for p in list_images([image_folder])]
    assert names == ["a.png", "b.bmp", "c.jpg", "d.tif", "e.png", "f.png"]
    assert list_images([image_folder / "b.bmp", image_folder])[0].name == "b.bmp"
    with pytest.raises(ValueError, match="neither a folder nor a file"):
        list_images([tmp_path / "nowhere"])
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="no images"):
        list_images([empty])


def test_to_model_channels() -> None:
    rgb = np.random.default_rng(1).random((4, 5, 3))
    np.testing.assert_allclose(
        to_model_channels(rgb, "y")[0],
        (16 + 65.481 * rgb[..., 0] + 128.553 * rgb[..., 1] + 24.966 * rgb[..., 2]) / 255,
        rtol=0,
        atol=1e-12,
    )
    gray = rgb[..., :1]
    # a grayscale image is seen as its RGB copy: Y = 16 + (65.481 + 128.553 + 24.966)·g
    np.testing.assert_allclose(
        to_model_channels(gray, "y")[0], (16 + 219 * gray[..., 0]) / 255, rtol=0, atol=1e-12
    )
    np.testing.assert_array_equal(to_model_channels(gray, "rgb"), np.repeat(gray.transpose(2, 0, 1), 3, 0))
    np.testing.assert_array_equal(
        to_model_channels(np.dstack([rgb, rgb[..., :1]]), "rgb"), rgb.transpose(2, 0, 1)
    )
    with pytest.raises(ValueError, match="channels"):
        to_model_channels(rgb, "lab")


def test_all_formats_prepared(image_folder: Path) -> None:
    for channels, c in (("y", 1), ("rgb", 3)):
        data = PatchDataset([image_folder], 3, patch_size=6, channels=channels, length=7)
        assert len(data.images) == 6 and len(data) == 7
        for item in data.images:
            assert item.hr.shape[0] == item.lr.shape[0] == c
            assert item.hr.shape[1:] == (item.lr.shape[1] * 3, item.lr.shape[2] * 3)
        lr, hr = data[5]
        assert lr.shape == (c, 6, 6) and hr.shape == (c, 18, 18) and lr.dtype == hr.dtype == torch.float32
    # 16-bit samples are kept: the HR of the 16-bit TIFF is not on the 8-bit grid
    tif = prepare_image(image_folder / "d.tif", 2, "rgb")
    assert np.abs(tif.hr * 255 - np.round(tif.hr * 255)).max() > 0.01


def test_patches_are_aligned_with_protocol_lr(image_folder: Path) -> None:
    """Without augmentation, each HR patch is found in the image at offsets divisible by r, and its LR patch is
    the protocol's LR image (MATLAB bicubic of the whole modcropped image, 8-bit) at the offset divided by r."""
    r, p = 3, 5
    data = PatchDataset([image_folder / "a.png"], r, patch_size=p, augment=False, seed=3)
    from subpixel.imageio import read_image

    y = to_y(read_image(image_folder / "a.png").astype(np.float64)) / 255
    y = y[: y.shape[0] // r * r, : y.shape[1] // r * r]
    lr_ref = quantize_uint8(imresize(y, 1 / r)) / 255
    seen = set()
    for i in range(20):
        lr, hr = (t[0].double().numpy() for t in data[i])
        hits = [
            (a, b)
            for a in range(y.shape[0] - p * r + 1)
            for b in range(y.shape[1] - p * r + 1)
            if np.abs(y[a : a + p * r, b : b + p * r] - hr).max() < 1e-6
        ]
        assert len(hits) == 1
        (a, b) = hits[0]
        assert a % r == 0 and b % r == 0
        np.testing.assert_allclose(lr, lr_ref[a // r : a // r + p, b // r : b // r + p], rtol=0, atol=1e-6)
        seen.add((a, b))
    assert len(seen) > 10  # positions vary


def test_augmented_pairs_stay_consistent(image_folder: Path) -> None:
    """With flips/rotations, LR is still the bicubic of its HR patch (away from the patch border, where the
    bicubic support of ±2 LR pixels stays inside the patch), for every one of the 8 transforms."""
    r, p = 2, 10
    data = PatchDataset([image_folder / "a.png"], r, patch_size=p, seed=1)
    kinds = set()
    for i in range(60):
        lr, hr = (t[0].double().numpy() for t in data[i])
        inner = imresize(hr, 1 / r)[2:-2, 2:-2]
        np.testing.assert_allclose(lr[2:-2, 2:-2], inner, rtol=0, atol=0.5 / 255 + 1e-9)
        rng = np.random.default_rng([1, i])
        rng.integers(data.positions)
        kinds.add(int(rng.integers(8)))
    assert kinds == set(range(8))


def test_deterministic_under_seed_and_workers(image_folder: Path) -> None:
    a = PatchDataset([image_folder], 2, patch_size=8, seed=7)
    b = PatchDataset([image_folder], 2, patch_size=8, seed=7)
    c = PatchDataset([image_folder], 2, patch_size=8, seed=8)
    for i in (0, 5, 123):
        assert all(torch.equal(x, y) for x, y in zip(a[i], b[i]))
    assert not all(torch.equal(a[i][1], c[i][1]) for i in range(5))

    def batches(workers: int) -> list[torch.Tensor]:
        loader = DataLoader(a, batch_size=4, num_workers=workers, shuffle=False)
        out = []
        for k, (lr, hr) in enumerate(loader):
            out.append(torch.cat([lr.flatten(), hr.flatten()]))
            if k == 3:
                break
        return out

    assert all(torch.equal(x, y) for x, y in zip(batches(0), batches(2)))


def test_errors(image_folder: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"a\.png.*smaller than one HR patch of 60×60"):
        PatchDataset([image_folder / "a.png"], 3, patch_size=20)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)
    with pytest.raises(ValueError, match=r"broken\.png"):
        PatchDataset([bad], 2)
    truncated = tmp_path / "trunc"
    truncated.mkdir()
    data = (image_folder / "a.png").read_bytes()
    (truncated / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"cut\.png"):
        PatchDataset([truncated], 2)
    with pytest.raises(ValueError, match="patch_size"):
        PatchDataset([image_folder], 2, patch_size=0)
    with pytest.raises(ValueError, match="scale"):
        PatchDataset([image_folder], 0)
    with pytest.raises(IndexError):
        PatchDataset([image_folder], 2, patch_size=4)[-1]


def test_training_and_evaluation_read_the_same_image_files(tmp_path: Path) -> None:
    """One list of image extensions: a folder's images for training are the test images of the protocol."""
    from subpixel.imageio import FORMAT_EXTENSIONS, IMAGE_EXTENSIONS
    from subpixel.sr.protocol import find_test_images

    rng = np.random.default_rng(1)
    for name in ("a.png", "b.webp", "c.jpeg", "d.tiff", "e.bmp"):
        write_image(tmp_path / name, smooth_image(rng, 24, 24, 3))
    (tmp_path / "notes.txt").write_text("not an image")
    trained = [p.name for p in list_images([tmp_path])]
    assert trained == ["a.png", "b.webp", "c.jpeg", "d.tiff", "e.bmp"]
    assert [t.hr_path.name for t in find_test_images(tmp_path, 2)] == trained
    assert set(IMAGE_EXTENSIONS) == {s for group in FORMAT_EXTENSIONS.values() for s in group}
