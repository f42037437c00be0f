"""Export of SubPixelConv layers and shuffles; rewriting of models exported from PyTorch (single layers in every
configuration the core supports, and DCGAN / U-Net / HiFi-GAN-like networks).

References: PyTorch's own output (``nn.ConvTranspose*d``, float32 and float64), ONNX Runtime on the original graph,
and ``onnx.reference.ReferenceEvaluator`` on the rewritten float64 graph.
"""

from __future__ import annotations

import io
import warnings
from collections import Counter

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx.reference import ReferenceEvaluator
from torch import nn

import subpixel
from subpixel.onnx import conv_transpose_to_subpixel, export, run_onnx, subpixel_to_conv_transpose

pytestmark = pytest.mark.usefixtures("single_thread")  # one thread, restored afterwards (tests/conftest.py)


def ops(model: onnx.ModelProto) -> Counter:
    return Counter(nd.op_type for nd in model.graph.node)


def close(a: np.ndarray, b: np.ndarray, tol: float = 1e-5) -> None:
    """fp32 tolerance, relative to the output's scale."""
    assert a.shape == b.shape
    np.testing.assert_allclose(a, b, rtol=0, atol=tol * max(1.0, float(np.abs(b).max())))


def ort_run(model: onnx.ModelProto, *inputs: np.ndarray) -> list[np.ndarray]:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.log_severity_level = 3
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return session.run(None, {i.name: x for i, x in zip(session.get_inputs(), inputs)})


# ----------------------------------------------------------------------------------------------- export
@pytest.mark.parametrize(
    ("layer", "shape", "want", "absent"),
    [
        (
            subpixel.SubPixelConv2d(4, 3, 4, stride=2, padding=1),
            (2, 4, 5, 6),
            {"Conv", "DepthToSpace", "Slice"},
            {"Transpose"},
        ),
        (
            subpixel.SubPixelConv2d.from_lr_kernel(4, 1, scale=3),
            (1, 4, 5, 5),
            {"Conv", "DepthToSpace"},
            {"Transpose", "Slice"},
        ),
        (
            subpixel.SubPixelConv1d(4, 2, 16, stride=8, padding=4),
            (1, 4, 7),
            {"Conv", "Reshape", "Transpose"},
            set(),
        ),
        (
            subpixel.SubPixelConv3d(2, 2, 3, stride=2, padding=1, output_padding=1),
            (1, 2, 3, 4, 2),
            {"Conv", "Reshape", "Transpose"},
            set(),
        ),
    ],
    ids=["2d-dcgan", "2d-espcn", "1d-hifigan", "3d"],
)
def test_export_subpixel_layers(layer: nn.Module, shape: tuple, want: set, absent: set) -> None:
    layer = layer.eval()
    x = torch.randn(*shape)
    model = export(layer, x, opset=13)
    assert want <= set(ops(model)) and not absent & set(ops(model)), ops(model)
    assert "ConvTranspose" not in ops(model)
    assert ops(model)["Slice"] <= 1  # the exporter's per-axis crops merged into one
    with torch.no_grad():
        want = layer(x).numpy()
    close(run_onnx(model, x)[0], want)
    # and --reverse turns the exported layer into one ConvTranspose (all Slices absorbed)
    back, report = subpixel_to_conv_transpose(model)
    assert ops(back) == Counter({"ConvTranspose": 1}), str(report)
    close(run_onnx(back, x)[0], want)


def test_export_subpixel_layers_every_argument() -> None:
    layers = [
        subpixel.SubPixelConv1d(4, 4, 5, stride=3, padding=2, output_padding=1, groups=2, bias=False),
        subpixel.SubPixelConv1d(4, 2, 3, stride=2, padding=1, dilation=2, output_padding=1),
        subpixel.SubPixelConv2d(4, 2, (3, 5), stride=(1, 2), padding=(1, 2), groups=2),
        subpixel.SubPixelConv2d(
            4, 2, (2, 3), stride=(3, 2), dilation=(2, 1), padding=(2, 0), output_padding=(1, 1)
        ),
        subpixel.SubPixelConv3d(
            4, 2, 3, stride=2, groups=2, dilation=(1, 2, 1), output_padding=1, bias=False
        ),
    ]
    xs = [
        torch.randn(2, 4, 6),
        torch.randn(1, 4, 5),
        torch.randn(1, 4, 5, 6),
        torch.randn(1, 4, 3, 4),
        torch.randn(1, 4, 2, 3, 2),
    ]
    module = Branches(layers).eval()
    model = export(module, xs)
    with torch.no_grad():
        for got, want in zip(run_onnx(model, *xs), module(*xs)):
            close(got, want.numpy())


def test_export_dcr_weights_give_dcr_depth_to_space(tmp_path) -> None:
    layer = subpixel.SubPixelConv2d(4, 3, 4, stride=2, padding=1, order="dcr").eval()
    x = torch.randn(1, 4, 6, 6)
    path = tmp_path / "dcr.onnx"
    export(layer, x, path)
    model = onnx.load(str(path))
    (d2s,) = [nd for nd in model.graph.node if nd.op_type == "DepthToSpace"]
    assert onnx.helper.get_attribute_value(next(a for a in d2s.attribute if a.name == "mode")) == b"DCR"
    with torch.no_grad():
        close(run_onnx(path, x)[0], layer(x).numpy())
    assert [p.name for p in tmp_path.iterdir()] == ["dcr.onnx"]  # no temporary file left behind


def test_export_shuffles_exactly() -> None:
    modules = [
        subpixel.PixelShuffle1d(3),
        subpixel.PixelShuffle2d(2),
        subpixel.PixelShuffle2d(2, order="dcr"),
        subpixel.PixelShuffle2d((1, 2)),
        subpixel.PixelShuffle3d((1, 2, 2)),
        subpixel.PixelUnshuffle2d(2),
        subpixel.PixelUnshuffle3d(2, order="dcr"),
    ]
    xs = [
        torch.randn(*s)
        for s in [
            (2, 6, 5),
            (1, 8, 3, 4),
            (1, 8, 3, 4),
            (1, 4, 3, 4),
            (1, 8, 2, 3, 4),
            (1, 2, 6, 4),
            (1, 1, 4, 2, 6),
        ]
    ]
    module = Branches(modules)
    model = export(module, xs)
    modes = sorted(
        nd.attribute[1].s if nd.attribute[1].name == "mode" else nd.attribute[0].s
        for nd in model.graph.node
        if nd.op_type == "DepthToSpace"
    )
    assert modes == [b"CRD", b"DCR"], ops(model)
    for got, want in zip(run_onnx(model, *xs), module(*xs)):
        np.testing.assert_array_equal(got, want.numpy())  # a permutation: bit-exact


def test_export_with_dynamic_sizes() -> None:
    layers = [
        subpixel.SubPixelConv1d(4, 2, 16, stride=8, padding=4),
        subpixel.SubPixelConv2d(4, 3, 4, stride=2, padding=1),
        subpixel.SubPixelConv3d(2, 2, 3, stride=2, padding=1, output_padding=1),
    ]
    module = Branches(layers).eval()
    model = export(
        module, [torch.randn(2, 4, 8), torch.randn(2, 4, 8, 8), torch.randn(2, 2, 4, 4, 4)], dynamic=True
    )
    for value in model.graph.input:
        dims = value.type.tensor_type.shape.dim
        assert all(d.HasField("dim_param") for i, d in enumerate(dims) if i != 1), value
    for n in (3, 5):  # one graph, other batch and spatial sizes
        xs = [torch.randn(1, 4, n + 2), torch.randn(3, 4, n, n + 1), torch.randn(1, 2, n, 2, n - 1)]
        with torch.no_grad():
            for got, want in zip(run_onnx(model, *xs), module(*xs)):
                close(got, want.numpy())


def test_export_rejects_old_opset() -> None:
    with pytest.raises(ValueError, match="opset must be an int >= 13, got 12"):
        export(subpixel.PixelShuffle2d(2), torch.randn(1, 4, 2, 2), opset=12)


# ----------------------------------------------------------------------------------------------- exported ConvTranspose
def torchscript_export(module: nn.Module, xs: list[torch.Tensor]) -> onnx.ModelProto:
    """PyTorch's TorchScript exporter: fast, and the source of many ONNX files in the wild."""
    f = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, tuple(xs), f, dynamo=False, opset_version=17)
    model = onnx.load_from_string(f.getvalue())
    onnx.checker.check_model(model, full_check=True)
    return model


class Branches(nn.Module):
    """Independent layers, one input and one output each: many configurations in one exported graph."""

    def __init__(self, layers: list[nn.Module]) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)

    def forward(self, *xs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(layer(x) for layer, x in zip(self.layers, xs))


T = {1: nn.ConvTranspose1d, 2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}
# (C_in, C_out, kernel, kwargs): every argument of nn.ConvTranspose*d the core supports
LAYERS = {
    1: [
        (4, 3, 4, {"stride": 2, "padding": 1}),
        (4, 2, 16, {"stride": 8, "padding": 4}),
        (4, 4, 5, {"stride": 3, "padding": 2, "output_padding": 1, "groups": 2, "bias": False}),
        (4, 2, 3, {"stride": 2, "padding": 1, "dilation": 2, "output_padding": 1}),
        (4, 2, 1, {"stride": 2}),
        (4, 2, 3, {"stride": 1, "padding": 1}),
        (4, 2, 5, {"stride": 2, "padding": 5}),
    ],
    2: [
        (4, 3, 4, {"stride": 2, "padding": 1}),
        (4, 2, 3, {"stride": 2, "padding": 1, "output_padding": 1}),
        (4, 2, (3, 5), {"stride": (1, 2), "padding": (1, 2)}),
        (4, 4, 3, {"stride": 2, "groups": 4, "bias": False}),
        (4, 2, (2, 3), {"stride": (3, 2), "dilation": (2, 1), "padding": (2, 0), "output_padding": (1, 1)}),
        (3, 2, 9, {"stride": 3, "padding": 3}),
        (4, 2, 2, {"stride": 2}),
    ],
    3: [
        (2, 2, 4, {"stride": 2, "padding": 1}),
        (2, 2, (3, 2, 3), {"stride": (1, 2, 3), "padding": (1, 0, 1), "output_padding": (0, 1, 2)}),
        (4, 2, 3, {"stride": 2, "groups": 2, "dilation": (1, 2, 1), "output_padding": 1, "bias": False}),
    ],
}


@pytest.mark.parametrize("n", [1, 2, 3])
def test_rewrite_models_exported_from_pytorch(n: int) -> None:
    torch.manual_seed(n)
    layers = [T[n](c_in, c_out, k, **kw) for c_in, c_out, k, kw in LAYERS[n]]
    for layer in layers:  # non-trivial biases
        if layer.bias is not None:
            nn.init.normal_(layer.bias)
    module = Branches(layers).eval()
    sizes = {1: (7,), 2: (5, 6), 3: (3, 4, 3)}[n]
    xs = [torch.randn(2, c_in, *sizes) for c_in, *_ in LAYERS[n]]

    # float32: ONNX Runtime, original and rewritten, against PyTorch
    model = torchscript_export(module, xs)
    assert ops(model)["ConvTranspose"] == len(layers)
    new, report = conv_transpose_to_subpixel(model)
    assert len(report.rewritten) == len(layers) and not report.skipped, str(report)
    assert "ConvTranspose" not in ops(new)
    with torch.no_grad():
        expected = [y.numpy() for y in module(*xs)]
    feeds = [x.numpy() for x in xs]
    for orig, got, want in zip(ort_run(model, *feeds), ort_run(new, *feeds), expected):
        close(orig, want)
        close(got, want)

    # float64: the reference evaluator on the rewritten graph against PyTorch, tightly
    module64 = Branches([layer.double() for layer in layers]).eval()
    xs64 = [x.double() for x in xs]
    new64, _ = conv_transpose_to_subpixel(torchscript_export(module64, xs64))
    sess = ReferenceEvaluator(new64)
    got64 = sess.run(None, {i: x.numpy() for i, x in zip(sess.input_names, xs64)})
    with torch.no_grad():
        for got, want in zip(got64, module64(*xs64)):
            np.testing.assert_allclose(got, want.numpy(), rtol=0, atol=1e-10)


# ----------------------------------------------------------------------------------------------- networks
class DCGANGenerator(nn.Module):
    def __init__(self, nz: int = 8, width: int = 8) -> None:
        super().__init__()
        w = width
        self.net = nn.Sequential(
            nn.ConvTranspose2d(nz, 4 * w, 4, 1, 0, bias=False),
            nn.BatchNorm2d(4 * w),
            nn.ReLU(),
            nn.ConvTranspose2d(4 * w, 2 * w, 4, 2, 1, bias=False),
            nn.BatchNorm2d(2 * w),
            nn.ReLU(),
            nn.ConvTranspose2d(2 * w, w, 4, 2, 1, bias=False),
            nn.BatchNorm2d(w),
            nn.ReLU(),
            nn.ConvTranspose2d(w, 3, 4, 2, 1, bias=False),
            nn.Tanh(),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


class UNetDecoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.up1 = nn.ConvTranspose2d(16, 8, 2, stride=2)
        self.conv1 = nn.Conv2d(16, 8, 3, padding=1)
        self.up2 = nn.ConvTranspose2d(8, 4, 3, stride=2, padding=1, output_padding=1)
        self.conv2 = nn.Conv2d(8, 4, 3, padding=1)
        self.head = nn.Conv2d(4, 2, 1)

    def forward(self, bottom: torch.Tensor, skip1: torch.Tensor, skip2: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv1(torch.cat([self.up1(bottom), skip1], 1)))
        x = torch.relu(self.conv2(torch.cat([self.up2(x), skip2], 1)))
        return self.head(x)


class ResBlock1d(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv1d(c, c, 3, dilation=d, padding=d) for d in (1, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv in self.convs:
            x = x + conv(nn.functional.leaky_relu(x, 0.1))
        return x


class HiFiGANLike(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.pre = nn.Conv1d(8, 16, 7, padding=3)
        self.ups = nn.ModuleList(
            [nn.ConvTranspose1d(16, 8, 16, 8, padding=4), nn.ConvTranspose1d(8, 4, 4, 2, padding=1)]
        )
        self.res = nn.ModuleList([ResBlock1d(8), ResBlock1d(4)])
        self.post = nn.Conv1d(4, 1, 7, padding=3)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        x = self.pre(mel)
        for up, res in zip(self.ups, self.res):
            x = res(up(nn.functional.leaky_relu(x, 0.1)))
        return torch.tanh(self.post(nn.functional.leaky_relu(x, 0.1)))


def _randomize_bn(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            nn.init.uniform_(m.running_var, 0.5, 2.0)
            nn.init.normal_(m.running_mean)
            nn.init.normal_(m.weight)
            nn.init.normal_(m.bias)


@pytest.mark.parametrize(
    ("net", "shapes", "n_up"),
    [
        (DCGANGenerator, [(2, 8, 1, 1)], 4),
        (UNetDecoder, [(1, 16, 4, 5), (1, 8, 8, 10), (1, 4, 16, 20)], 2),
        (HiFiGANLike, [(1, 8, 10)], 2),
    ],
    ids=["dcgan", "unet-decoder", "hifigan-like"],
)
def test_rewrite_networks(net: type, shapes: list, n_up: int) -> None:
    module = net().eval()
    _randomize_bn(module)
    xs = [torch.randn(*s) for s in shapes]
    model = torchscript_export(module, xs) if net is not UNetDecoder else export(module, xs)  # both exporters
    assert ops(model)["ConvTranspose"] == n_up
    new, report = conv_transpose_to_subpixel(model)
    assert len(report.rewritten) == n_up and not report.skipped, str(report)
    assert "ConvTranspose" not in ops(new)
    with torch.no_grad():
        want = module(*xs).numpy()
    feeds = [x.numpy() for x in xs]
    (orig,) = ort_run(model, *feeds)
    (got,) = ort_run(new, *feeds)
    close(orig, want)
    close(got, want)
    sess = ReferenceEvaluator(new)
    (ref,) = sess.run(None, dict(zip(sess.input_names, feeds)))
    close(ref, want)


def test_dcgan_round_trip() -> None:
    module = DCGANGenerator().eval()
    _randomize_bn(module)
    z = torch.randn(1, 8, 1, 1)
    model = torchscript_export(module, [z])
    there, _ = conv_transpose_to_subpixel(model)
    back, report = subpixel_to_conv_transpose(there)
    # the three stride-2 layers come back; the stride-1 first layer became a plain Conv (no shuffle to match)
    assert ops(back)["ConvTranspose"] == 3 and "DepthToSpace" not in ops(back), str(report)
    with torch.no_grad():
        close(ort_run(back, z.numpy())[0], module(z).numpy())


def test_rewrite_model_quantized_by_onnx_runtime(tmp_path) -> None:
    # ONNX Runtime's own QDQ quantizer (int8 weights per output channel, uint8 activations), then the rewrite
    quantization = pytest.importorskip("onnxruntime.quantization")
    module = DCGANGenerator().eval()
    _randomize_bn(module)
    src, dst = tmp_path / "dcgan.onnx", tmp_path / "dcgan_qdq.onnx"
    src.write_bytes(torchscript_export(module, [torch.randn(1, 8, 1, 1)]).SerializeToString())
    zs = [np.random.default_rng(i).standard_normal((1, 8, 1, 1)).astype(np.float32) for i in range(4)]
    input_name = onnx.load(str(src)).graph.input[0].name

    class Reader(quantization.CalibrationDataReader):
        def __init__(self) -> None:
            self.data = iter([{input_name: z} for z in zs])

        def get_next(self) -> dict | None:
            return next(self.data, None)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quantization.quantize_static(
            str(src),
            str(dst),
            Reader(),
            quant_format=quantization.QuantFormat.QDQ,
            per_channel=True,
            weight_type=quantization.QuantType.QInt8,
            activation_type=quantization.QuantType.QUInt8,
        )
    model = onnx.load(str(dst))
    new, report = conv_transpose_to_subpixel(model)
    assert len(report.rewritten) == 4 and not report.skipped, str(report)
    assert "ConvTranspose" not in ops(new) and ops(new)["DequantizeLinear"] == ops(model)["DequantizeLinear"]
    for z in zs:
        (orig,) = ort_run(model, z)
        (got,) = ort_run(new, z)
        # activations are re-quantized after each layer: a different summation order may move a value across a
        # rounding boundary (how many depends on the CPU's int8 kernels: 98.3 % equal on an AVX-512 VNNI machine,
        # > 99 % elsewhere), so ask for most outputs equal and the rest within a few quantization steps
        assert np.mean(orig == got) > 0.95
        close(got, orig, tol=0.05)
