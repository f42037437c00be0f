"""ConvTranspose -> Conv + DepthToSpace (or Reshape/Transpose) + Slice on hand-built ONNX graphs, and back.

References, all independent of the rewrite: a direct nested loop over input samples and kernel taps (float64) that
resolves ``pads`` / ``auto_pad`` / ``output_shape`` from the ONNX spec's text; ONNX Runtime on the original graph
(float32; it has no float64 ConvTranspose); ``onnx.reference.ReferenceEvaluator`` on the original and the
rewritten float64 graphs.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

from subpixel.onnx import (
    conv_transpose_to_subpixel,
    resolve_conv_transpose,
    subpixel_to_conv_transpose,
)

OPSET = 17


# ----------------------------------------------------------------------------------------------- references
def spec_geometry(attrs: dict, in_spatial: list[int], kernel: list[int]) -> tuple[list[int], list[int]]:
    """(pads at the beginning, output sizes) per axis, from the operator spec's text (ONNX Runtime's choice
    for an output longer than the natural one: nothing at the beginning)."""
    n = len(kernel)
    s = attrs.get("strides", [1] * n)
    d = attrs.get("dilations", [1] * n)
    a = attrs.get("output_padding", [0] * n)
    auto = attrs.get("auto_pad", "NOTSET")
    begin, out = [], []
    for i in range(n):
        natural = s[i] * (in_spatial[i] - 1) + a[i] + (kernel[i] - 1) * d[i] + 1
        if "output_shape" in attrs or auto in ("SAME_UPPER", "SAME_LOWER"):
            size = attrs["output_shape"][i] if "output_shape" in attrs else in_spatial[i] * s[i]
            total = natural - size
            if total < 0:
                b = 0
            elif auto == "SAME_UPPER":
                b = total // 2
            else:
                b = total - total // 2
        elif auto == "VALID":
            b, size = 0, natural
        else:
            pads = attrs.get("pads", [0] * 2 * n)
            b, size = pads[i], natural - pads[i] - pads[i + n]
        begin.append(b)
        out.append(size)
    return begin, out


def conv_transpose_loop(x: np.ndarray, w: np.ndarray, b: np.ndarray | None, attrs: dict) -> np.ndarray:
    """y[m] += x[n] · W[t] wherever m = n·s + t·d − pad_begin lands inside the output; float64."""
    n = x.ndim - 2
    group = attrs.get("group", 1)
    s = attrs.get("strides", [1] * n)
    d = attrs.get("dilations", [1] * n)
    begin, out = spec_geometry(attrs, list(x.shape[2:]), list(w.shape[2:]))
    cig, cog = x.shape[1] // group, w.shape[1]
    y = np.zeros((x.shape[0], cog * group, *out))
    x, w = x.astype(np.float64), w.astype(np.float64)
    for pos in np.ndindex(*x.shape[2:]):
        for tap in np.ndindex(*w.shape[2:]):
            m = [pos[i] * s[i] + tap[i] * d[i] - begin[i] for i in range(n)]
            if not all(0 <= m[i] < out[i] for i in range(n)):
                continue
            for g in range(group):
                xi = x[(slice(None), slice(g * cig, (g + 1) * cig), *pos)]
                wi = w[(slice(g * cig, (g + 1) * cig), slice(None), *tap)]
                y[(slice(None), slice(g * cog, (g + 1) * cog), *m)] += xi @ wi
    if b is not None:
        y += b.astype(np.float64).reshape(1, -1, *[1] * n)
    return y


# ----------------------------------------------------------------------------------------------- builders
def ct_model(
    x_shape: list,
    w: np.ndarray,
    b: np.ndarray | None,
    attrs: dict,
    dtype: type = np.float32,
) -> onnx.ModelProto:
    """One ConvTranspose node; weight and bias as initializers."""
    elem = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    inits = [numpy_helper.from_array(w.astype(dtype), "w")]
    inputs = ["x", "w"]
    if b is not None:
        inits.append(numpy_helper.from_array(b.astype(dtype), "b"))
        inputs.append("b")
    node = helper.make_node("ConvTranspose", inputs, ["y"], name="up", **attrs)
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", elem, x_shape)],
        [helper.make_tensor_value_info("y", elem, [None] * len(x_shape))],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])


def ort_run(model: onnx.ModelProto, feeds: dict) -> list[np.ndarray]:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"]).run(
        None, feeds
    )


def ops(model: onnx.ModelProto) -> list[str]:
    return [nd.op_type for nd in model.graph.node]


# (x shape, (C_in, C_out/group, *k), attrs, bias)
ONE_D = ((2, 3, 7), (3, 2, 4), {"strides": [2], "pads": [1, 1]}, True)
STRIDE1 = ((1, 2, 6), (2, 3, 3), {"strides": [1], "pads": [1, 1]}, True)
NEG_LR_PAD = ((1, 2, 6), (2, 3, 5), {"strides": [2], "pads": [7, 6]}, False)
DCGAN = ((2, 4, 5, 6), (4, 3, 4, 4), {"strides": [2, 2], "pads": [1, 1, 1, 1]}, True)
K3_OP1 = (
    (1, 4, 5, 4),
    (4, 2, 3, 3),
    {"strides": [2, 2], "pads": [1, 1, 1, 1], "output_padding": [1, 1]},
    True,
)
ESPCN = ((1, 3, 4, 5), (3, 2, 9, 9), {"strides": [3, 3], "pads": [3, 3, 3, 3]}, False)
UNEQUAL = ((1, 4, 4, 5), (4, 2, 3, 5), {"strides": [1, 2], "pads": [0, 2, 1, 0]}, True)
DEPTHWISE = ((1, 6, 3, 3), (6, 1, 3, 3), {"strides": [2, 2], "group": 6, "output_padding": [1, 0]}, True)
SAME_LOWER_2D = ((1, 2, 3, 4), (2, 2, 3, 3), {"strides": [2, 2], "auto_pad": "SAME_LOWER"}, True)
OUTPUT_SHAPE_2D = ((1, 2, 3, 4), (2, 2, 4, 4), {"strides": [2, 2], "output_shape": [5, 9]}, True)
THREE_D = ((1, 2, 3, 3, 2), (2, 2, 4, 4, 4), {"strides": [2, 2, 2], "pads": [1, 1, 1, 1, 1, 1]}, True)
CONFIGS = [
    # 1-D
    ONE_D,
    ((1, 4, 6), (4, 3, 16), {"strides": [8], "pads": [4, 4]}, True),  # HiFi-GAN up-sampler
    ((1, 2, 5), (2, 2, 3), {"strides": [3], "pads": [0, 2], "output_padding": [2]}, False),  # asymmetric
    ((1, 4, 5), (4, 1, 5), {"strides": [2], "dilations": [2], "group": 2, "pads": [3, 1]}, True),
    ((1, 2, 6), (2, 3, 1), {"strides": [3]}, True),  # k < s: zero LR taps
    STRIDE1,  # stride 1: no shuffle
    NEG_LR_PAD,  # pads > kernel: negative LR padding
    # LR crop at the start longer than the input, padding at the end (found by hypothesis)
    ((1, 2, 1), (2, 2, 1), {"strides": [1], "dilations": [3], "pads": [2, 0], "output_padding": [2]}, False),
    ((1, 2, 2), (2, 2, 3), {"strides": [2], "pads": [5, 0], "output_padding": [1]}, True),
    ((1, 3, 5), (3, 2, 5), {"strides": [2], "auto_pad": "SAME_UPPER"}, True),
    ((1, 3, 5), (3, 2, 5), {"strides": [2], "auto_pad": "SAME_LOWER"}, True),
    ((1, 3, 5), (3, 2, 4), {"strides": [2], "auto_pad": "VALID", "output_padding": [1]}, True),
    ((1, 3, 5), (3, 2, 5), {"strides": [2], "output_shape": [10]}, True),
    ((1, 3, 5), (3, 2, 5), {"strides": [2], "output_shape": [9], "auto_pad": "SAME_UPPER"}, True),
    ((1, 3, 5), (3, 2, 5), {"strides": [2], "output_shape": [11], "output_padding": [1]}, True),
    ((1, 3, 5), (3, 2, 5), {"strides": [2], "output_shape": [14]}, True),  # longer than natural
    ((1, 3, 5), (3, 2, 5), {"strides": [2], "output_shape": [10], "pads": [1, 2]}, True),  # pads ignored
    ((1, 3, 5), (3, 2, 5), {"strides": [2], "output_shape": [12], "auto_pad": "VALID"}, True),
    # 2-D
    DCGAN,  # DCGAN
    K3_OP1,
    ESPCN,  # ESPCN as ConvTranspose
    UNEQUAL,  # unequal strides
    (
        (1, 4, 4, 5),
        (4, 2, 4, 3),
        {"strides": [3, 2], "dilations": [2, 1], "group": 2, "pads": [2, 1, 3, 0]},
        True,
    ),
    DEPTHWISE,  # depthwise
    SAME_LOWER_2D,
    ((1, 2, 3, 4), (2, 2, 3, 3), {"strides": [2, 2], "auto_pad": "SAME_UPPER", "kernel_shape": [3, 3]}, True),
    OUTPUT_SHAPE_2D,
    ((1, 2, 3, 4), (2, 2, 2, 2), {"strides": [2, 2], "dilations": [3, 3]}, False),
    # 3-D
    THREE_D,
    ((1, 4, 2, 3, 3), (4, 1, 3, 2, 3), {"strides": [1, 2, 3], "pads": [1, 0, 2, 0, 1, 1], "group": 2}, True),
    (
        (1, 2, 2, 3, 2),
        (2, 3, 3, 3, 3),
        {"strides": [2, 2, 2], "output_padding": [1, 0, 1], "dilations": [1, 2, 1]},
        False,
    ),
    ((1, 2, 2, 2, 3), (2, 2, 3, 3, 3), {"strides": [2, 2, 2], "auto_pad": "SAME_UPPER"}, True),
]


def _ids(cfg: tuple) -> str:
    x, w, attrs, bias = cfg
    parts = [f"{len(x) - 2}d", "k" + "x".join(map(str, w[2:]))]
    parts += [f"{k}={v}" for k, v in attrs.items()]
    return "-".join(parts) + ("-bias" if bias else "")


def _weights(cfg: tuple, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    x_shape, w_shape, attrs, bias = cfg
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(x_shape)
    w = rng.standard_normal(w_shape)
    b = rng.standard_normal(w_shape[1] * attrs.get("group", 1)) if bias else None
    return x, w, b


# ----------------------------------------------------------------------------------------------- sweep
@pytest.mark.parametrize("cfg", CONFIGS, ids=_ids)
def test_rewrite_matches_loop_runtime_and_reference(cfg: tuple) -> None:
    x_shape, _, attrs, _ = cfg
    x, w, b = _weights(cfg)
    expected = conv_transpose_loop(x, w, b, attrs)

    # float64: the rewritten graph in the reference evaluator against the loop, tightly
    model64 = ct_model(list(x_shape), w, b, attrs, np.float64)
    new64, report = conv_transpose_to_subpixel(model64)
    assert len(report.rewritten) == 1 and not report.skipped, str(report)
    assert "ConvTranspose" not in ops(new64)
    (got64,) = ReferenceEvaluator(new64).run(None, {"x": x})
    assert got64.shape == expected.shape
    np.testing.assert_allclose(got64, expected, rtol=0, atol=1e-10)
    n = len(x_shape) - 2
    strides, out_pad = attrs.get("strides", [1] * n), attrs.get("output_padding", [0] * n)
    if (
        attrs.get("group", 1) == 1
        and not ("output_shape" in attrs and attrs.get("auto_pad", "NOTSET") in ("NOTSET", "VALID"))
        and all(a < s for a, s in zip(out_pad, strides))
    ):
        # the reference's ConvTranspose (onnx 1.23) mishandles group > 1, ignores output_shape's padding rule under
        # NOTSET/VALID, and fails on output_padding >= stride (allowed when the dilation is larger)
        (ref64,) = ReferenceEvaluator(model64).run(None, {"x": x})
        np.testing.assert_allclose(got64, ref64, rtol=0, atol=1e-10)

    # float32: the rewrite runs equal in ONNX Runtime, and ONNX Runtime on the original follows the same semantics
    model32 = ct_model(list(x_shape), w, b, attrs, np.float32)
    new32, _ = conv_transpose_to_subpixel(model32)
    feeds = {"x": x.astype(np.float32)}
    (new,) = ort_run(new32, feeds)
    np.testing.assert_allclose(new, expected, rtol=0, atol=1e-4)
    if all(a < s for a, s in zip(out_pad, strides)):  # ONNX Runtime refuses output_padding >= stride
        (orig,) = ort_run(model32, feeds)
        np.testing.assert_allclose(orig, expected, rtol=0, atol=1e-4)
        np.testing.assert_allclose(new, orig, rtol=0, atol=1e-4)


def test_node_types_per_dimension() -> None:
    cases = {
        "2d-equal": (DCGAN, ["Conv", "DepthToSpace", "Slice"]),
        "2d-unequal": (UNEQUAL, ["Conv", "Reshape", "Transpose", "Reshape", "Slice"]),
        "1d": (ONE_D, ["Conv", "Reshape", "Transpose", "Reshape", "Slice"]),
        "3d": (THREE_D, ["Conv", "Reshape", "Transpose", "Reshape", "Slice"]),
        "stride1": (STRIDE1, ["Conv"]),
        "espcn": (ESPCN, ["Conv", "DepthToSpace"]),
        "negative-lr-pad": (NEG_LR_PAD, ["Slice", "Conv", "Reshape", "Transpose", "Reshape", "Slice"]),
    }
    for name, (cfg, want) in cases.items():
        _x, w, b = _weights(cfg)
        new, _ = conv_transpose_to_subpixel(ct_model(list(cfg[0]), w, b, cfg[2]))
        assert ops(new) == want, name
    # the DepthToSpace is CRD, the order of the core's weight conversion
    new, _ = conv_transpose_to_subpixel(ct_model(list(DCGAN[0]), *_weights(DCGAN)[1:], DCGAN[2]))
    (d2s,) = [nd for nd in new.graph.node if nd.op_type == "DepthToSpace"]
    assert {a.name: helper.get_attribute_value(a) for a in d2s.attribute}["mode"] == b"CRD"


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 2),
    k=st.integers(1, 5),
    s=st.integers(1, 4),
    d=st.integers(1, 3),
    pb=st.integers(0, 6),
    pe=st.integers(0, 6),
    a=st.integers(0, 3),
    group=st.sampled_from([1, 2]),
    length=st.integers(1, 5),
    bias=st.booleans(),
)
def test_rewrite_random_configs_float64(n, k, s, d, pb, pe, a, group, length, bias) -> None:
    a = min(a, max(s, d) - 1)
    natural = s * (length - 1) + d * (k - 1) + 1 + a
    if natural - pb - pe < 1:
        pe = 0
        pb = min(pb, natural - 1)
    attrs = {"strides": [s] * n, "dilations": [d] * n, "pads": [pb] * n + [pe] * n, "group": group}
    if a:
        attrs["output_padding"] = [a] * n
    cfg = ((1, 2 * group, *[length] * n), (2 * group, 2, *[k] * n), attrs, bias)
    x, w, b = _weights(cfg, seed=k * 100 + s)
    new, report = conv_transpose_to_subpixel(ct_model(list(cfg[0]), w, b, attrs, np.float64))
    assert not report.skipped, str(report)
    (got,) = ReferenceEvaluator(new).run(None, {"x": x})
    np.testing.assert_allclose(got, conv_transpose_loop(x, w, b, attrs), rtol=0, atol=1e-10)


# ----------------------------------------------------------------------------------------------- dynamic shapes
@pytest.mark.parametrize(
    ("x_shape", "w_shape", "attrs"),
    [
        (["N", 3, "L"], (3, 2, 4), {"strides": [2], "pads": [1, 2]}),
        (
            ["N", 3, "H", "W"],
            (3, 2, 4, 4),
            {"strides": [2, 2], "pads": [1, 1, 1, 1], "output_padding": [1, 0]},
        ),
        (["N", 3, "H", "W"], (3, 2, 3, 4), {"strides": [3, 2], "auto_pad": "SAME_LOWER"}),
        (["N", 2, "D", "H", "W"], (2, 2, 3, 3, 3), {"strides": [2, 1, 2], "pads": [1, 0, 2, 0, 1, 1]}),
        (["N", 2, "L"], (2, 3, 5), {"strides": [2], "pads": [7, 10]}),
    ],
    ids=["1d", "2d", "2d-unequal-same", "3d", "1d-pads-beyond-kernel"],
)
def test_dynamic_spatial_sizes(x_shape: list, w_shape: tuple, attrs: dict) -> None:
    rng = np.random.default_rng(1)
    w, b = rng.standard_normal(w_shape), rng.standard_normal(w_shape[1])
    model = ct_model(x_shape, w, b, attrs)
    new, report = conv_transpose_to_subpixel(model)
    assert len(report.rewritten) == 1, str(report)
    for size in (9, 12):  # one graph, two input sizes
        x = rng.standard_normal((2, w_shape[0], *[size + i for i in range(len(w_shape) - 2)]))
        (orig,) = ort_run(model, {"x": x.astype(np.float32)})
        (got,) = ort_run(new, {"x": x.astype(np.float32)})
        np.testing.assert_allclose(orig, conv_transpose_loop(x, w, b, attrs), atol=1e-4, rtol=0)
        np.testing.assert_allclose(got, orig, atol=1e-4, rtol=0)


# ----------------------------------------------------------------------------------------------- left as they are
def test_nodes_that_cannot_be_rewritten_are_left_and_listed() -> None:
    rng = np.random.default_rng(2)
    w = numpy_helper.from_array(rng.standard_normal((2, 2, 4, 4)).astype(np.float32), "w")
    f = TensorProto.FLOAT
    nodes = [
        # weight fed at run time
        helper.make_node("ConvTranspose", ["x", "w_in"], ["y1"], name="fed", strides=[2, 2]),
        # output_shape with an unknown input size
        helper.make_node(
            "ConvTranspose", ["x", "w"], ["y2"], name="dyn", strides=[2, 2], output_shape=[9, 9]
        ),
        # a good one
        helper.make_node("ConvTranspose", ["x", "w"], ["y3"], name="good", strides=[2, 2], pads=[1, 1, 1, 1]),
        # a weight computed by another node
        helper.make_node("Neg", ["w"], ["w_neg"]),
        helper.make_node("ConvTranspose", ["x", "w_neg"], ["y4"], name="computed", strides=[2, 2]),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [
            helper.make_tensor_value_info("x", f, [1, 2, "H", "W"]),
            helper.make_tensor_value_info("w_in", f, [2, 2, 4, 4]),
        ],
        [helper.make_tensor_value_info(f"y{i}", f, [None] * 4) for i in range(1, 5)],
        [w],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    new, report = conv_transpose_to_subpixel(model)
    assert [name for name, _ in report.rewritten] == ["good"]
    reasons = dict(report.skipped)
    assert set(reasons) == {"fed", "dyn", "computed"}
    assert (
        "not a constant initializer" in reasons["fed"] and "not a constant initializer" in reasons["computed"]
    )
    assert "output_shape" in reasons["dyn"]
    assert ops(new).count("ConvTranspose") == 3
    x = rng.standard_normal((1, 2, 5, 5)).astype(np.float32)
    feeds = {"x": x, "w_in": numpy_helper.to_array(w)}
    for u, v in zip(ort_run(model, feeds), ort_run(new, feeds)):
        np.testing.assert_allclose(u, v, atol=1e-4)


def test_conv_transpose_inside_a_subgraph_is_listed() -> None:
    f = TensorProto.FLOAT
    w = numpy_helper.from_array(np.ones((1, 1, 2, 2), np.float32), "w")
    body = helper.make_graph(
        [helper.make_node("ConvTranspose", ["x", "w"], ["z"], strides=[2, 2])],
        "then",
        [],
        [helper.make_tensor_value_info("z", f, [None] * 4)],
    )
    other = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["z2"])],
        "else",
        [],
        [helper.make_tensor_value_info("z2", f, [None] * 4)],
    )
    node = helper.make_node("If", ["c"], ["y"], then_branch=body, else_branch=other)
    graph = helper.make_graph(
        [node],
        "g",
        [
            helper.make_tensor_value_info("x", f, [1, 1, 2, 2]),
            helper.make_tensor_value_info("c", TensorProto.BOOL, []),
        ],
        [helper.make_tensor_value_info("y", f, [None] * 4)],
        [w],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    new, report = conv_transpose_to_subpixel(model)
    assert not report.rewritten and "subgraph" in report.skipped[0][1]
    assert new.graph.initializer[0].name == "w"  # still used by the subgraph: kept


def test_input_model_is_not_modified() -> None:
    _x, w, b = _weights(DCGAN)
    model = ct_model(list(DCGAN[0]), w, b, DCGAN[2])
    before = model.SerializeToString()
    conv_transpose_to_subpixel(model)
    subpixel_to_conv_transpose(model)
    assert model.SerializeToString() == before


def test_resolve_rejects_bad_attributes() -> None:
    node = helper.make_node("ConvTranspose", ["x", "w"], ["y"], kernel_shape=[3, 3])
    with pytest.raises(ValueError, match=r"kernel_shape \[3, 3\] differs from the weight's \[4, 4\]"):
        resolve_conv_transpose(node, (2, 2, 4, 4), [5, 5])
    node = helper.make_node("ConvTranspose", ["x", "w"], ["y"], strides=[2])
    with pytest.raises(ValueError, match=r"strides=\[2\] must have 2 entries"):
        resolve_conv_transpose(node, (2, 2, 4, 4), [5, 5])
    node = helper.make_node(
        "ConvTranspose", ["x", "w"], ["y"], strides=[2, 2], auto_pad="SAME_UPPER", output_padding=[1, 1]
    )
    with pytest.raises(ValueError, match="disagree"):
        resolve_conv_transpose(node, (2, 2, 4, 4), [5, 5])


@pytest.mark.parametrize(
    "attrs",
    [
        {"strides": [3], "auto_pad": "SAME_UPPER"},
        {"strides": [3], "auto_pad": "SAME_LOWER", "output_shape": [15]},
        {"strides": [2], "auto_pad": "SAME_UPPER", "output_padding": [1]},
    ],
)
def test_cases_where_runtimes_disagree_are_left_and_listed(attrs: dict) -> None:
    # kernel 1, stride 3: total padding 1 - 3 = -2; ONNX Runtime gives 13 samples, the reference evaluator 15
    model = ct_model([1, 2, 5], np.ones((2, 2, 1)), None, attrs)
    new, report = conv_transpose_to_subpixel(model)
    assert not report.rewritten and "disagree" in report.skipped[0][1]
    assert ops(new) == ["ConvTranspose"]


# ----------------------------------------------------------------------------------------------- reverse
def conv_d2s_model(
    w: np.ndarray,
    b: np.ndarray | None,
    pads: list[int],
    block: int,
    mode: str,
    x_shape: list,
    slice_: tuple | None = None,
    group: int = 1,
) -> onnx.ModelProto:
    f = TensorProto.FLOAT
    inits = [numpy_helper.from_array(w.astype(np.float32), "w")]
    conv_in = ["x", "w"]
    if b is not None:
        inits.append(numpy_helper.from_array(b.astype(np.float32), "b"))
        conv_in.append("b")
    nodes = [
        helper.make_node("Conv", conv_in, ["z"], name="conv", pads=pads, group=group),
        helper.make_node("DepthToSpace", ["z"], ["hr" if slice_ else "y"], blocksize=block, mode=mode),
    ]
    if slice_:
        starts, ends = slice_
        inits += [
            numpy_helper.from_array(np.array(starts, np.int64), "st"),
            numpy_helper.from_array(np.array(ends, np.int64), "en"),
            numpy_helper.from_array(np.array([2, 3], np.int64), "ax"),
        ]
        nodes.append(helper.make_node("Slice", ["hr", "st", "en", "ax"], ["y"]))
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", f, x_shape)],
        [helper.make_tensor_value_info("y", f, [None] * 4)],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])


@pytest.mark.parametrize(
    ("mode", "pads", "slice_", "group", "x_shape"),
    [
        ("CRD", [1, 1, 1, 1], None, 1, [1, 4, 5, 6]),  # ESPCN
        ("DCR", [1, 1, 1, 1], None, 1, [1, 4, 5, 6]),
        ("CRD", [0, 2, 1, 0], None, 2, [1, 4, 5, 6]),
        ("CRD", [2, 2, 2, 2], ([1, 2], [-1, -3]), 1, [1, 4, 5, 6]),  # over-padded, cropped by the Slice
        ("CRD", [1, 0, 1, 2], ([1, 0], [10, 2**62]), 1, [1, 4, 5, 6]),  # positive end: needs the static size
        ("DCR", [1, 1, 1, 1], ([3, 1], [-2, -1]), 1, ["N", 4, "H", "W"]),  # dynamic sizes, relative ends
    ],
)
def test_reverse_conv_depth_to_space(
    mode: str, pads: list, slice_: tuple | None, group: int, x_shape: list
) -> None:
    rng = np.random.default_rng(3)
    block, c_out = 2, 2
    w = rng.standard_normal((c_out * group * block * block, 4 // group, 3, 3))
    b = np.repeat(rng.standard_normal(c_out * group), block * block)  # one bias per output channel
    if mode == "DCR":
        b = np.tile(rng.standard_normal(c_out * group), block * block)
    model = conv_d2s_model(w, b, pads, block, mode, x_shape, slice_, group)
    new, report = subpixel_to_conv_transpose(model)
    assert len(report.rewritten) == 1, str(report)
    assert ops(new) == ["ConvTranspose"]
    x = rng.standard_normal((1, 4, 5, 6)).astype(np.float32)
    (orig,) = ort_run(model, {"x": x})
    (got,) = ort_run(new, {"x": x})
    assert got.shape == orig.shape
    np.testing.assert_allclose(got, orig, atol=1e-4, rtol=0)


def test_reverse_refuses_what_it_cannot_prove() -> None:
    rng = np.random.default_rng(4)
    w = rng.standard_normal((8, 4, 3, 3))
    cases = {
        "phase": (rng.standard_normal(8), [1, 1, 1, 1], "CRD", 1),  # bias differs between phases
        "pads": (None, [3, 1, 1, 1], "CRD", 1),  # LR padding beyond kernel - 1
        "dcr-groups": (None, [1, 1, 1, 1], "DCR", 2),
    }
    for name, (b, pads, mode, group) in cases.items():
        ww = w[:, : 4 // group]
        model = conv_d2s_model(ww, b, pads, 2, mode, [1, 4, 5, 5], group=group)
        new, report = subpixel_to_conv_transpose(model)
        assert not report.rewritten and len(report.skipped) == 1, name
        assert ops(new) == ["Conv", "DepthToSpace"], name


@pytest.mark.parametrize(
    "cfg",
    [ONE_D, DCGAN, K3_OP1, ESPCN, UNEQUAL, DEPTHWISE, SAME_LOWER_2D, OUTPUT_SHAPE_2D, THREE_D],
    ids=_ids,
)
def test_round_trip_restores_the_conv_transpose(cfg: tuple) -> None:
    x, w, b = _weights(cfg)
    model = ct_model(list(cfg[0]), w, b, cfg[2])
    there, _ = conv_transpose_to_subpixel(model)
    back, report = subpixel_to_conv_transpose(there)
    assert ops(back) == ["ConvTranspose"], str(report)
    node = back.graph.node[0]
    weight = numpy_helper.to_array(next(t for t in back.graph.initializer if t.name == node.input[1]))
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    if all(d == 1 for d in cfg[2].get("dilations", [])):
        # same kernel, bit-identical weights (the smallest kernel that covers the LR taps)
        assert list(attrs["kernel_shape"]) == list(w.shape[2:])
        assert np.array_equal(weight, w.astype(np.float32))
    feeds = {"x": x.astype(np.float32)}
    np.testing.assert_allclose(ort_run(back, feeds)[0], ort_run(model, feeds)[0], atol=1e-4, rtol=0)


def test_round_trip_with_dynamic_sizes() -> None:
    rng = np.random.default_rng(5)
    w1, w3 = rng.standard_normal((3, 2, 4)), rng.standard_normal((2, 2, 3, 3, 3))
    one_d = ct_model(["N", 3, "L"], w1, None, {"strides": [2], "pads": [1, 2]})
    back, report = subpixel_to_conv_transpose(conv_transpose_to_subpixel(one_d)[0])
    assert ops(back) == ["ConvTranspose"], str(report)  # Reshape [0, C, s, -1]: a shuffle whatever L is
    x = rng.standard_normal((2, 3, 9)).astype(np.float32)
    np.testing.assert_allclose(ort_run(back, {"x": x})[0], ort_run(one_d, {"x": x})[0], atol=1e-4, rtol=0)
    # 3-D with dynamic sizes computes its reshape targets in the graph (Shape of the Conv output): left as it is
    three_d = ct_model(["N", 2, "D", "H", "W"], w3, None, {"strides": [2, 2, 2]})
    back, report = subpixel_to_conv_transpose(conv_transpose_to_subpixel(three_d)[0])
    assert not report.rewritten and "Conv" in ops(back) and "ConvTranspose" not in ops(back)


def test_every_config_is_covered_by_a_case() -> None:
    # guard against the sweep silently shrinking: 1-D, 2-D and 3-D, every auto_pad mode, output_shape, groups,
    # dilation, output_padding, asymmetric pads, with and without bias
    seen = set()
    for x_shape, _, attrs, bias in CONFIGS:
        seen.add(f"{len(x_shape) - 2}d")
        seen |= {f"attr:{k}" for k in attrs}
        seen |= {f"auto:{attrs['auto_pad']}"} if "auto_pad" in attrs else set()
        seen.add(f"bias:{bias}")
        if "pads" in attrs:
            n = len(x_shape) - 2
            if attrs["pads"][:n] != attrs["pads"][n:]:
                seen.add("asymmetric")
    want = {"1d", "2d", "3d", "bias:True", "bias:False", "asymmetric"}
    want |= {
        f"attr:{k}"
        for k in ("strides", "pads", "output_padding", "dilations", "group", "output_shape", "kernel_shape")
    }
    want |= {f"auto:{m}" for m in ("SAME_UPPER", "SAME_LOWER", "VALID")}
    assert want <= seen, want - seen
    assert len(CONFIGS) >= 28


def test_float16_weights_are_converted_exactly() -> None:
    # the weight transform only moves entries and inserts zeros: float16 gives the float64 result, rounded once
    _, w, b = _weights(K3_OP1)
    w16 = w.astype(np.float16)
    new16, _ = conv_transpose_to_subpixel(ct_model(list(K3_OP1[0]), w16, b, K3_OP1[2], np.float16))
    new64, _ = conv_transpose_to_subpixel(
        ct_model(list(K3_OP1[0]), w16.astype(np.float64), b, K3_OP1[2], np.float64)
    )
    lr16, lr64 = (
        numpy_helper.to_array(next(t for t in m.graph.initializer if "weight_lr" in t.name))
        for m in (new16, new64)
    )
    assert lr16.dtype == np.float16
    np.testing.assert_array_equal(lr16.astype(np.float64), lr64)


@pytest.mark.parametrize(
    ("split", "perm", "merge"),
    [
        ([0, 2, 2, -1], [0, 2, 1, 3], [0, 2, -1]),  # a transpose that is not the shuffle's
        ([0, 2, 6, 2], [0, 1, 3, 2], [0, 2, -1]),  # the right perm, but the split is (C, L, 2), not (C, s, L)
        ([0, 1, 4, -1], [0, 1, 3, 2], [0, 1, -1]),  # factor 4 of 4 channels is a shuffle, but of 1 channel
    ],
)
def test_reverse_refuses_reshape_chains_that_are_not_the_shuffle(
    split: list, perm: list, merge: list
) -> None:
    f = TensorProto.FLOAT
    rng = np.random.default_rng(6)
    inits = [
        numpy_helper.from_array(rng.standard_normal((4, 3, 2)).astype(np.float32), "w"),
        numpy_helper.from_array(np.array(split, np.int64), "split"),
        numpy_helper.from_array(np.array(merge, np.int64), "merge"),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["z"], pads=[1, 0]),
        helper.make_node("Reshape", ["z", "split"], ["a"]),
        helper.make_node("Transpose", ["a"], ["t"], perm=perm),
        helper.make_node("Reshape", ["t", "merge"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", f, [1, 3, 6])],
        [helper.make_tensor_value_info("y", f, [None] * 3)],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    new, report = subpixel_to_conv_transpose(model)
    if split[2] == 4:  # 4 phases of 1 channel: a valid shuffle, so it is rewritten (and must stay equal)
        assert ops(new) == ["ConvTranspose"], str(report)
    else:
        assert not report.rewritten and "not provably a periodic shuffle" in report.skipped[0][1]
        assert ops(new) == ["Conv", "Reshape", "Transpose", "Reshape"]
    x = rng.standard_normal((1, 3, 6)).astype(np.float32)
    np.testing.assert_allclose(ort_run(new, {"x": x})[0], ort_run(model, {"x": x})[0], atol=1e-5, rtol=0)


# ----------------------------------------------------------------------------------------------- quantized (QDQ)
def qdq_model(
    q: np.ndarray, scale: np.ndarray, zp: np.ndarray | None, axis: int, attrs: dict, x_shape: list, bias=None
):
    """x -> ConvTranspose(x, DequantizeLinear(q, scale, zp, axis), [DequantizeLinear(bias int32)])."""
    f = TensorProto.FLOAT
    inits = [numpy_helper.from_array(q, "wq"), numpy_helper.from_array(scale.astype(np.float32), "ws")]
    dq_in = ["wq", "ws"]
    if zp is not None:
        inits.append(numpy_helper.from_array(zp.astype(q.dtype), "wz"))
        dq_in.append("wz")
    nodes = [helper.make_node("DequantizeLinear", dq_in, ["w"], axis=axis)]
    ct_in = ["x", "w"]
    if bias is not None:
        bq, bs = bias
        inits += [numpy_helper.from_array(bq, "bq"), numpy_helper.from_array(bs.astype(np.float32), "bs")]
        nodes.append(helper.make_node("DequantizeLinear", ["bq", "bs"], ["b"], axis=0))
        ct_in.append("b")
    nodes.append(helper.make_node("ConvTranspose", ct_in, ["y"], name="up", **attrs))
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", f, x_shape)],
        [helper.make_tensor_value_info("y", f, [None] * len(x_shape))],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])


@pytest.mark.parametrize(
    ("dtype", "per_channel", "group", "bias", "attrs", "x_shape"),
    [
        (np.uint8, False, 1, False, {"strides": [2, 2], "pads": [1, 1, 1, 1]}, [1, 4, 5, 6]),
        (
            np.int8,
            True,
            1,
            True,
            {"strides": [2, 2], "pads": [1, 1, 1, 1], "output_padding": [1, 0]},
            [1, 4, 5, 6],
        ),
        (np.int8, True, 2, True, {"strides": [3], "pads": [2, 1], "group": 2}, [1, 4, 7]),
        (np.uint8, True, 1, False, {"strides": [2, 1, 2], "dilations": [1, 2, 1]}, [1, 4, 3, 3, 2]),
    ],
    ids=["u8-per-tensor-2d", "s8-per-channel-2d-bias", "s8-per-channel-1d-groups", "u8-per-channel-3d"],
)
def test_quantized_weights_stay_quantized(
    dtype, per_channel: bool, group: int, bias: bool, attrs: dict, x_shape: list
) -> None:
    rng = np.random.default_rng(7)
    n = len(x_shape) - 2
    k = [3, 4, 3][:n] if n > 1 else [5]
    c_in, c_out_g = x_shape[1], 3
    info = np.iinfo(dtype)
    q = rng.integers(info.min, info.max + 1, (c_in, c_out_g, *k)).astype(dtype)
    scale = rng.uniform(0.01, 0.1, c_out_g if per_channel else ())
    zp = rng.integers(info.min // 2, info.max // 2 + 1, c_out_g if per_channel else ()).astype(dtype)
    b = None
    if bias:
        b = (
            rng.integers(-1000, 1000, c_out_g * group).astype(np.int32),
            rng.uniform(1e-4, 1e-3, c_out_g * group),
        )
    model = qdq_model(q, np.asarray(scale), np.asarray(zp), 1, attrs, x_shape, b)
    new, report = conv_transpose_to_subpixel(model)
    assert len(report.rewritten) == 1, str(report)
    assert "ConvTranspose" not in ops(new)
    conv = next(nd for nd in new.graph.node if nd.op_type == "Conv")
    producer = {o: nd for nd in new.graph.node for o in nd.output}
    assert producer[conv.input[1]].op_type == "DequantizeLinear"  # the LR weight is still int8/uint8 + scale
    lr_q = numpy_helper.to_array(
        next(t for t in new.graph.initializer if t.name == producer[conv.input[1]].input[0])
    )
    assert lr_q.dtype == dtype
    # independent reference: the loop on the dequantized float weight
    shape_b = (1, -1, *[1] * n) if per_channel else ()
    w = (q.astype(np.float64) - np.reshape(zp, shape_b)) * np.reshape(scale.astype(np.float32), shape_b)
    bf = None if b is None else b[0] * b[1].astype(np.float32).astype(np.float64)
    x = rng.standard_normal(x_shape).astype(np.float32)
    expected = conv_transpose_loop(x.astype(np.float64), w, bf, attrs)
    (orig,) = ort_run(model, {"x": x})
    (got,) = ort_run(new, {"x": x})
    tol = 1e-5 * max(1.0, float(np.abs(expected).max()))
    np.testing.assert_allclose(orig, expected, rtol=0, atol=tol)
    np.testing.assert_allclose(got, expected, rtol=0, atol=tol)


def test_quantized_weights_per_input_channel_are_left() -> None:
    q = np.ones((4, 3, 4, 4), np.int8)
    model = qdq_model(q, np.full(4, 0.1), np.zeros(4, np.int8), 0, {"strides": [2, 2]}, [1, 4, 5, 5])
    new, report = conv_transpose_to_subpixel(model)
    assert not report.rewritten and "axis 0" in report.skipped[0][1]
    assert ops(new) == ["DequantizeLinear", "ConvTranspose"]
