"""What a Y model sees: a gray image and its RGB copy give the model the same Y in training, evaluation, the
study and upscaling (one definition, :func:`subpixel.sr.color.model_y`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from subpixel.imageio import write_image
from subpixel.sr.color import gray_from_model_y, model_y, rgb_to_ycbcr
from subpixel.sr.data import prepare_image, to_model_channels
from subpixel.sr.evaluate import model_upscaler
from subpixel.upscaling.image import sr_pipeline


class _Recorder(nn.Module):
    """A Y model that records what it is given and upscales it by nearest neighbour."""

    scale, channels = 2, "y"

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[Tensor] = []
        self.anchor = nn.Parameter(torch.zeros(()))

    def forward(self, x: Tensor) -> Tensor:
        self.seen.append(x.detach().double().clone())
        return nn.functional.interpolate(x, scale_factor=2, mode="nearest")


def _gray_and_copy() -> tuple[np.ndarray, np.ndarray]:
    gray = np.random.default_rng(0).integers(0, 256, (6, 7, 1)).astype(np.float64) / 255.0
    return gray, np.repeat(gray, 3, axis=2)


def test_model_y_is_bt601_of_the_rgb_copy() -> None:
    gray, rgb = _gray_and_copy()
    expected = rgb_to_ycbcr(rgb)[..., 0] / 255.0  # independent: the full YCbCr conversion of the copy
    assert np.array_equal(model_y(gray), model_y(rgb))
    assert np.abs(model_y(gray) - expected).max() < 1e-12
    assert np.abs(model_y(gray) - (16 + 219 * gray[..., 0]) / 255).max() < 1e-12
    assert np.abs(gray_from_model_y(model_y(gray)) - gray[..., 0]).max() < 1e-12


def test_training_sees_a_gray_image_as_its_rgb_copy(tmp_path: Path) -> None:
    gray, rgb = _gray_and_copy()
    assert np.array_equal(to_model_channels(gray, "y"), to_model_channels(rgb, "y"))
    write_image(tmp_path / "gray.png", gray[..., 0])
    write_image(tmp_path / "rgb.png", rgb)
    a, b = prepare_image(tmp_path / "gray.png", 2), prepare_image(tmp_path / "rgb.png", 2)
    assert np.array_equal(a.hr, b.hr) and np.array_equal(a.lr, b.lr)


def _seen_by_evaluation(image: np.ndarray, channels: str | None = None) -> tuple[Tensor, np.ndarray]:
    model = _Recorder()
    out = model_upscaler(model, channels=channels)(image, 2)
    return model.seen[0], out


def test_evaluation_and_the_study_see_a_gray_image_as_its_rgb_copy() -> None:
    gray, rgb = _gray_and_copy()
    for channels in (None, "y"):  # evaluation (the model's channels) and the study (told "y")
        seen_gray, out_gray = _seen_by_evaluation(gray, channels)
        seen_rgb, out_rgb = _seen_by_evaluation(rgb, channels)
        assert torch.equal(seen_gray, seen_rgb)
        # the outputs: the gray plane whose Y is the model's output, and the Y/255 plane of the copy
        assert np.abs(model_y(out_gray[..., None]) - out_rgb).max() < 1e-12


def test_upscaling_sees_what_training_and_evaluation_see() -> None:
    gray, rgb = _gray_and_copy()
    seen = []
    for image in (gray, rgb):
        model = _Recorder()
        fn = sr_pipeline(model, "y", 2)
        fn(torch.from_numpy(image.transpose(2, 0, 1)[None]).float())
        seen.append(model.seen[0])
    trained = torch.from_numpy(to_model_channels(gray, "y"))[None]
    evaluated = _seen_by_evaluation(gray)[0]
    assert torch.equal(seen[0], seen[1])
    assert torch.allclose(seen[0], trained, atol=1e-6)  # float32 tile vs float64 array
    assert torch.allclose(evaluated.double(), trained.double(), atol=1e-6)
