"""ESPCN: architecture, forward against plain torch ops, receptive field, cost, weights files, bundled weights."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

import subpixel
from subpixel.sr import ESPCN, ESPCNConfig, load, pretrained, pretrained_scales, save
from subpixel.sr.models import config_path


def _reference_forward(model: ESPCN, x: torch.Tensor) -> torch.Tensor:
    """ESPCN written with torch's own ops: conv2d ('same'), tanh, conv2d to C·r², F.pixel_shuffle."""
    convs = [m for m in model.features if isinstance(m, torch.nn.Conv2d)]
    for conv in convs:
        x = torch.tanh(F.conv2d(x, conv.weight, conv.bias, padding=conv.kernel_size[0] // 2))
    up = model.upsample
    k = up.weight.shape[-1]
    bias = up.bias.repeat_interleave(model.scale**2)  # one bias per output channel, shared by its r² phases
    y = F.conv2d(x, up.weight, bias, padding=k // 2)
    return F.pixel_shuffle(y, model.scale)


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_paper_architecture_shapes(scale: int) -> None:
    model = ESPCN(scale)
    shapes = [tuple(p.shape) for p in model.parameters()]
    assert shapes == [(64, 1, 5, 5), (64,), (32, 64, 3, 3), (32,), (scale**2, 32, 3, 3), (1,)]
    assert isinstance(model.upsample, subpixel.SubPixelConv2d)
    assert model(torch.rand(2, 1, 7, 9)).shape == (2, 1, 7 * scale, 9 * scale)
    assert model.scale == scale and model.channels == "y" and model.lr_receptive_radius == 4


@pytest.mark.parametrize(("scale", "channels"), [(2, "y"), (3, "rgb"), (4, "y")])
def test_forward_equals_torch_ops(scale: int, channels: str) -> None:
    model = ESPCN(scale, channels=channels, dtype=torch.float64)
    with torch.no_grad():  # non-zero biases everywhere, so the bias layout is tested too
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    c = 1 if channels == "y" else 3
    x = torch.rand(2, c, 11, 8, dtype=torch.float64)
    torch.testing.assert_close(model(x), _reference_forward(model, x), rtol=1e-12, atol=1e-12)


def test_icnr_start_is_nearest_neighbour() -> None:
    """Freshly built, the sub-pixel layer is ICNR: each r×r output block is constant (no checkerboard)."""
    model = ESPCN(3, dtype=torch.float64)
    with torch.no_grad():
        y = model(torch.rand(1, 1, 6, 5, dtype=torch.float64))[0, 0]
    blocks = y.reshape(6, 3, 5, 3)
    torch.testing.assert_close(blocks, blocks[:, :1, :, :1].expand_as(blocks), rtol=0, atol=1e-12)
    assert float(y.std()) > 0


@pytest.mark.parametrize(("kernels", "radius"), [((5, 3, 3), 4), ((3, 1), 1), ((9, 5, 5, 3), 9)])
def test_lr_receptive_radius_matches_perturbation(kernels: tuple[int, ...], radius: int) -> None:
    widths = (6,) * (len(kernels) - 1)
    model = ESPCN(2, widths=widths, kernel_sizes=kernels, dtype=torch.float64)
    assert model.lr_receptive_radius == radius
    n, c = 25, 12
    x = torch.rand(1, 1, n, n, dtype=torch.float64)
    x2 = x.clone()
    x2[0, 0, c, c] += 1.0
    changed = (model(x2) - model(x))[0, 0].abs() > 0
    rows = torch.nonzero(changed.any(1)).flatten()
    # outputs of LR pixels c ± radius (HR rows 2(c - radius) .. 2(c + radius) + 1) change, and no others
    assert int(rows.min()) == 2 * (c - radius) and int(rows.max()) == 2 * (c + radius) + 1


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_multiply_adds_per_pixel_matches_flop_counter(scale: int) -> None:
    model = ESPCN(scale)
    h, w = 12, 10
    with FlopCounterMode(display=False) as counter:
        model(torch.rand(1, 1, h, w))
    macs = counter.get_total_flops() / 2
    assert model.multiply_adds_per_pixel() == pytest.approx(macs / (h * w * scale**2))
    # the paper's ESPCN: (5·5·1·64 + 3·3·64·32 + 3·3·32·r²) per LR pixel
    assert model.multiply_adds_per_pixel() == pytest.approx((1600 + 18432 + 288 * scale**2) / scale**2)


def test_config_round_trip_and_errors() -> None:
    model = ESPCN(4, channels="rgb", widths=(16, 8, 8), kernel_sizes=(5, 3, 3, 3), activation="prelu")
    data = json.loads(json.dumps(model.config.to_dict()))
    assert ESPCNConfig.from_dict(data) == model.config
    rebuilt = ESPCN.from_config(data)
    rebuilt.load_state_dict(model.state_dict())
    x = torch.rand(1, 3, 5, 5)
    torch.testing.assert_close(rebuilt(x), model(x))
    with pytest.raises(ValueError, match="kernel_sizes must have"):
        ESPCN(3, kernel_sizes=(5, 3))
    with pytest.raises(ValueError, match="odd"):
        ESPCN(3, kernel_sizes=(5, 4, 3))
    with pytest.raises(ValueError, match="channels"):
        ESPCN(3, channels="yuv")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="activation"):
        ESPCN(3, activation="gelu")
    with pytest.raises(ValueError, match="scale"):
        ESPCN(0)
    with pytest.raises(ValueError, match="unknown ESPCN config keys"):
        ESPCNConfig.from_dict({"scale": 2, "depth": 3})
    with pytest.raises(ValueError, match=r"shape \(N, 1, h, w\)"):
        ESPCN(2)(torch.rand(1, 3, 4, 4))


def test_save_load_round_trip(tmp_path: Path) -> None:
    model = ESPCN(3, widths=(8, 4))
    path = save(model, tmp_path / "m.safetensors", metadata={"note": "hello"})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json", "m.safetensors"]  # no temporary left over
    document = json.loads(config_path(path).read_text())
    assert document["config"]["widths"] == [8, 4] and document["note"] == "hello"
    loaded = load(path)
    assert not loaded.training
    for (ka, va), (kb, vb) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)


def test_load_errors(tmp_path: Path) -> None:
    path = save(ESPCN(3, widths=(8, 4)), tmp_path / "m.safetensors")
    with pytest.raises(ValueError, match="does not exist"):
        load(tmp_path / "missing.safetensors")
    # wrong shapes: the config says wider layers than the tensors have
    document = json.loads(config_path(path).read_text())
    document["config"]["widths"] = [16, 4]
    config_path(path).write_text(json.dumps(document))
    with pytest.raises(ValueError, match=r"does not fit its config.*features\.0\.weight"):
        load(path)
    # corrupt (truncated) weights
    path = save(ESPCN(3, widths=(8, 4)), tmp_path / "t.safetensors")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"t\.safetensors.*not a readable safetensors file"):
        load(path)
    # config missing, or not JSON
    path = save(ESPCN(3, widths=(8, 4)), tmp_path / "c.safetensors")
    config_path(path).write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load(path)
    config_path(path).unlink()
    with pytest.raises(ValueError, match=r"c\.json.*is missing"):
        load(path)
    with pytest.raises(ValueError, match=r"must end with \.safetensors"):
        save(ESPCN(2), tmp_path / "x.pt")


def test_pretrained_bundled_weights() -> None:
    assert pretrained_scales() == (2, 3, 4)
    weights = Path(subpixel.sr.models.__file__).parent / "weights"
    for scale in (2, 3, 4):
        model = pretrained(scale)
        assert model.scale == scale and model.channels == "y"
        # the paper's architecture (or a cheaper one): no more multiply-adds than ESPCN for this scale
        assert model.multiply_adds_per_pixel() <= ESPCN(scale).multiply_adds_per_pixel()
        size = (weights / f"espcn_x{scale}.safetensors").stat().st_size
        assert size < 1_000_000
        assert json.loads((weights / f"espcn_x{scale}.json").read_text())["training"]["steps"] > 0
    with pytest.raises(ValueError, match=r"scale=5.*\[2, 3, 4\]"):
        pretrained(5)


STANDING = Path(__file__).resolve().parents[1] / "docs" / "sr"


def _published(scale: int, model: str, dataset: str) -> float:
    """The mean Y-PSNR of a bundled model in its published standing (``docs/sr/standing_x{scale}.json``)."""
    document = json.loads((STANDING / f"standing_x{scale}.json").read_text())
    entry = next(m for m in document["models"] if m["weights"] == f"pretrained:{model}_x{scale}")
    return next(r["mean"]["psnr"] for r in entry["results"] if r["dataset"] == dataset)


@pytest.mark.parametrize("dataset", ["Set5", pytest.param("Set14", marks=pytest.mark.slow)])
@pytest.mark.parametrize("model", ["rep", "espcn"])
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_bundled_weights_score_their_published_standing(
    scale: int, model: str, dataset: str, shared_sr_data: Path
) -> None:
    """Each bundled model, scored by the protocol (``subpixel evaluate``), is within 0.02 dB of the figure its
    standing publishes (a regression of a few hundredths of a dB in the weights or the protocol fails)."""
    from subpixel.sr.evaluate import evaluate

    result = evaluate(pretrained(scale, model=model), shared_sr_data / dataset, scale, progress=False)
    assert abs(result.mean_psnr - _published(scale, model, dataset)) <= 0.02
