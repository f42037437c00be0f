"""ConvTranspose graphs against their Conv + DepthToSpace rewrites in ONNX Runtime (CPU): same run, interleaved.

Usage: python benchmarks/onnx_rewrite.py   Prints a Markdown table (docs/onnx.md) and writes
benchmarks/results/onnx_rewrite.json with versions, load average and commit.

ONNX Runtime runs with one intra-op thread, in the calling thread, so besides wall-clock time the script reports
the calling thread's CPU time (``time.thread_time``), which a busy shared machine disturbs much less. Median and
interquartile range of 50 alternating runs of each graph after 3 warm-up runs.
"""

import io
import itertools
import json
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import torch
from torch import nn

from _common import machine_info
from subpixel.onnx import compare_models, conv_transpose_to_subpixel

warnings.filterwarnings("ignore")
torch.set_num_threads(1)
REPEATS = 50


def ts_export(m, xs):
    f = io.BytesIO()
    torch.onnx.export(m.eval(), tuple(xs), f, dynamo=False, opset_version=17)
    return onnx.load_from_string(f.getvalue())


def dcgan(nz=100, ngf=64):
    L = []
    chans = [nz, ngf * 8, ngf * 4, ngf * 2, ngf]
    L += [nn.ConvTranspose2d(nz, ngf * 8, 4, 1, 0, bias=False), nn.BatchNorm2d(ngf * 8), nn.ReLU()]
    for a, b in itertools.pairwise(chans[1:]):
        L += [nn.ConvTranspose2d(a, b, 4, 2, 1, bias=False), nn.BatchNorm2d(b), nn.ReLU()]
    L += [nn.ConvTranspose2d(ngf, 3, 4, 2, 1, bias=False), nn.Tanh()]
    return nn.Sequential(*L)


class Ups1d(nn.Module):
    def __init__(self):
        super().__init__()
        self.pre = nn.Conv1d(80, 512, 7, padding=3)
        spec = [(512, 256, 16, 8, 4), (256, 128, 16, 8, 4), (128, 64, 4, 2, 1), (64, 32, 4, 2, 1)]
        self.ups = nn.ModuleList(nn.ConvTranspose1d(a, b, k, s, p) for a, b, k, s, p in spec)

    def forward(self, x):
        x = self.pre(x)
        for u in self.ups:
            x = u(nn.functional.leaky_relu(x, 0.1))
        return x


cases = {
    "DCGAN generator (nz=100, ngf=64, 64x64 out)": (dcgan(), [torch.randn(1, 100, 1, 1)]),
    "HiFi-GAN V1 up-sampling stack (80 mel x 32 frames -> 8192 samples)": (Ups1d(), [torch.randn(1, 80, 32)]),
    "ConvTranspose2d(64, 32, 4, s2, p1) on 1x64x64x64": (
        nn.ConvTranspose2d(64, 32, 4, 2, 1),
        [torch.randn(1, 64, 64, 64)],
    ),
    "ConvTranspose2d(64, 64, 3, s2, p1, op1) on 1x64x64x64": (
        nn.ConvTranspose2d(64, 64, 3, 2, 1, 1),
        [torch.randn(1, 64, 64, 64)],
    ),
    "ConvTranspose2d(256, 128, 2, s2) on 1x256x32x32 (U-Net)": (
        nn.ConvTranspose2d(256, 128, 2, 2),
        [torch.randn(1, 256, 32, 32)],
    ),
    "ConvTranspose2d(32, 1, 9, s3, p3) on 1x32x128x128 (ESPCN x3 as deconv)": (
        nn.ConvTranspose2d(32, 1, 9, 3, 3),
        [torch.randn(1, 32, 128, 128)],
    ),
    "ConvTranspose3d(32, 16, 4, s2, p1) on 1x32x16x16x16": (
        nn.ConvTranspose3d(32, 16, 4, 2, 1),
        [torch.randn(1, 32, 16, 16, 16)],
    ),
}


def session(model):
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return onnxruntime.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )


def stats(values):
    q = np.percentile(np.asarray(values) * 1e3, [25, 50, 75])
    return {"median_ms": float(q[1]), "q25_ms": float(q[0]), "q75_ms": float(q[2])}


print(
    "| model | ConvTranspose CPU ms | rewritten CPU ms | speed-up (CPU) | speed-up (wall) | max abs error |"
)
print("|---|---|---|---|---|---|")
rows = []


def qdq(model, xs):
    """The same model quantized by ONNX Runtime (QDQ; int8 weights per output channel, uint8 activations)."""
    from onnxruntime import quantization

    names = [i.name for i in model.graph.input]

    class Reader(quantization.CalibrationDataReader):
        def __init__(self):
            self.data = iter([{n: torch.randn_like(x).numpy() for n, x in zip(names, xs)} for _ in range(4)])

        def get_next(self):
            return next(self.data, None)

    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "m.onnx", Path(tmp) / "q.onnx"
        src.write_bytes(model.SerializeToString())
        quantization.quantize_static(
            str(src),
            str(dst),
            Reader(),
            quant_format=quantization.QuantFormat.QDQ,
            per_channel=True,
            weight_type=quantization.QuantType.QInt8,
            activation_type=quantization.QuantType.QUInt8,
        )
        return onnx.load(str(dst))


jobs = []
for name, (m, xs) in cases.items():
    jobs.append((name, ts_export(m, xs), xs))
for name in [
    "DCGAN generator (nz=100, ngf=64, 64x64 out)",
    "ConvTranspose2d(64, 32, 4, s2, p1) on 1x64x64x64",
]:
    _, model, xs = next(j for j in jobs if j[0] == name)
    jobs.append((name + ", QDQ int8", qdq(model, xs), xs))
for name, model, xs in jobs:
    new, _ = conv_transpose_to_subpixel(model)
    cmp = compare_models(model, new, repeats=1, threads=1)  # errors on random inputs
    feeds = {i.name: x.numpy() for i, x in zip(session(model).get_inputs(), xs)}
    sessions = [session(model), session(new)]
    for sess in sessions:
        for _ in range(3):
            sess.run(None, feeds)
    wall, cpu = [[], []], [[], []]
    for _ in range(REPEATS):
        for j, sess in enumerate(sessions):
            w0, c0 = time.perf_counter(), time.thread_time()
            sess.run(None, feeds)
            cpu[j].append(time.thread_time() - c0)
            wall[j].append(time.perf_counter() - w0)
    row = {
        "case": name,
        "convtranspose_cpu": stats(cpu[0]),
        "rewritten_cpu": stats(cpu[1]),
        "convtranspose_wall": stats(wall[0]),
        "rewritten_wall": stats(wall[1]),
        "max_abs_error": max(cmp.max_abs_error.values()),
        "max_abs_value": max(cmp.max_abs_value.values()),
    }
    rows.append(row)
    c0, c1 = row["convtranspose_cpu"], row["rewritten_cpu"]
    w0, w1 = row["convtranspose_wall"]["median_ms"], row["rewritten_wall"]["median_ms"]
    print(
        f"| {name} | {c0['median_ms']:.2f} ({c0['q25_ms']:.2f}-{c0['q75_ms']:.2f}) "
        f"| {c1['median_ms']:.2f} ({c1['q25_ms']:.2f}-{c1['q75_ms']:.2f}) "
        f"| {c0['median_ms'] / c1['median_ms']:.2f}x | {w0 / w1:.2f}x "
        f"| {row['max_abs_error']:.2g} (of {row['max_abs_value']:.2g}) |",
        flush=True,
    )
meta = machine_info(
    1, "benchmarks/onnx_rewrite.py", onnxruntime=onnxruntime.__version__, onnx=onnx.__version__
)
meta.update(repeats=REPEATS, rows=rows)
out = Path(__file__).resolve().parent / "results" / "onnx_rewrite.json"
out.parent.mkdir(exist_ok=True)
tmp = out.with_suffix(".json.tmp")
tmp.write_text(json.dumps(meta, indent=2))
tmp.replace(out)
print(f"wrote {out}")
