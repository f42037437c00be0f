"""``subpixel onnx rewrite`` / ``subpixel onnx export``: results, verification, bad input, file safety."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import subpixel.onnx.rewrite as rewrite_module
from subpixel.cli import main
from subpixel.onnx import OnnxInputError, compare_models, load_model


def dcgan_layer(opset: int = 17, x_shape: list | None = None) -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((4, 3, 4, 4)).astype(np.float32), "w")
    b = numpy_helper.from_array(rng.standard_normal(3).astype(np.float32), "b")
    node = helper.make_node(
        "ConvTranspose", ["x", "w", "b"], ["y"], name="up", strides=[2, 2], pads=[1, 1, 1, 1]
    )
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape or [1, 4, 6, 7])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None] * 4)],
        [w, b],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def save(model: onnx.ModelProto, path: Path) -> Path:
    path.write_bytes(model.SerializeToString())
    return path


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_rewrite_verifies_and_writes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = save(dcgan_layer(), tmp_path / "in.onnx")
    before = digest(src)
    assert main(["onnx", "rewrite", str(src), "-o", str(tmp_path / "out.onnx"), "--repeats", "2"]) == 0
    out = capsys.readouterr().out
    assert "rewrote 1 node(s)" in out and "Conv + DepthToSpace + Slice" in out
    assert "output y: max abs error" in out and "time per run (median): original" in out
    assert digest(src) == before  # the input is only read
    model = load_model(tmp_path / "out.onnx")  # passes the full checker
    assert [nd.op_type for nd in model.graph.node] == ["Conv", "DepthToSpace", "Slice"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.onnx", "out.onnx"]  # no temporary file left


def test_reverse_and_no_verify(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = save(dcgan_layer(), tmp_path / "in.onnx")
    mid, back = tmp_path / "mid.onnx", tmp_path / "back.onnx"
    assert main(["onnx", "rewrite", str(src), "-o", str(mid), "--no-verify"]) == 0
    assert "verified" not in capsys.readouterr().out
    assert main(["onnx", "rewrite", str(mid), "-o", str(back), "--reverse", "--repeats", "1"]) == 0
    assert "Conv + DepthToSpace + Slice -> ConvTranspose" in capsys.readouterr().out
    model = onnx.load(str(back))
    assert [nd.op_type for nd in model.graph.node] == ["ConvTranspose"]


def test_dynamic_input_shape_option(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = save(dcgan_layer(x_shape=["N", 4, "H", "W"]), tmp_path / "in.onnx")
    out = tmp_path / "out.onnx"
    assert (
        main(["onnx", "rewrite", str(src), "-o", str(out), "--input-shape", "x=2x4x5x9", "--repeats", "1"])
        == 0
    )
    assert "(x=2x4x5x9)" in capsys.readouterr().out
    assert main(["onnx", "rewrite", str(src), "-o", str(out), "--force", "--input-shape", "z=1x4x5x9"]) == 2
    assert "unknown inputs ['z']" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["onnx", "rewrite", str(src), "-o", str(out), "--input-shape", "x=1xQ"])
    assert exc.value.code == 2
    assert "expected NAME=D1xD2x.." in capsys.readouterr().err


def test_verification_catches_a_wrong_rewrite(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    real = rewrite_module.conv_transpose_to_subpixel

    def broken(model: onnx.ModelProto, **kwargs: object) -> tuple:
        new, report = real(model, **kwargs)
        w = next(t for t in new.graph.initializer if "weight_lr" in t.name)
        w.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(w) * 1.01, w.name))
        return new, report

    monkeypatch.setattr(rewrite_module, "conv_transpose_to_subpixel", broken)
    src = save(dcgan_layer(), tmp_path / "in.onnx")
    assert main(["onnx", "rewrite", str(src), "-o", str(tmp_path / "out.onnx"), "--repeats", "1"]) == 1
    assert "differ by more than the tolerance" in capsys.readouterr().err
    cmp = compare_models(dcgan_layer(), broken(dcgan_layer())[0], repeats=1)
    assert cmp.max_abs_error["y"] > 1e-3


def test_bad_inputs_get_clear_messages(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out.onnx"
    cases = {
        "text.onnx": (b"this is not a protobuf at all \xff\xfe", "is not an ONNX model"),
        "empty.onnx": (b"", "is not an ONNX model"),
        "old.onnx": (
            dcgan_layer(opset=9).SerializeToString(),
            "imports opset 9 of the default domain; at least 11",
        ),
    }
    broken = dcgan_layer()
    broken.graph.node[0].input[1] = "missing_weight"
    cases["broken.onnx"] = (broken.SerializeToString(), "fails onnx.checker (full check)")
    for name, (data, message) in cases.items():
        src = tmp_path / name
        src.write_bytes(data)
        assert main(["onnx", "rewrite", str(src), "-o", str(out)]) == 2, name
        assert message in capsys.readouterr().err, name
        assert src.read_bytes() == data and not out.exists(), name
    with pytest.raises(OnnxInputError, match="does not exist"):
        load_model(tmp_path / "nowhere.onnx")


def test_output_file_safety(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = save(dcgan_layer(), tmp_path / "in.onnx")
    before = digest(src)
    assert main(["onnx", "rewrite", str(src), "-o", str(src), "--force"]) == 2
    assert "is an input of this command" in capsys.readouterr().err
    existing = tmp_path / "existing.onnx"
    existing.write_bytes(b"keep me")
    assert main(["onnx", "rewrite", str(src), "-o", str(existing)]) == 2
    assert "exists; pass --force" in capsys.readouterr().err
    assert existing.read_bytes() == b"keep me"
    assert main(["onnx", "rewrite", str(src), "-o", str(tmp_path / "no" / "dir.onnx"), "--no-verify"]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert digest(src) == before


def test_export_layer(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "layer.onnx"
    argv = ["onnx", "export", "-o", str(out), "--layer", "2d", "--in-channels", "4", "--out-channels", "2"]
    assert main([*argv, "--kernel-size", "4", "--stride", "2", "--padding", "1", "--size", "6x5"]) == 0
    text = capsys.readouterr().out
    assert "DepthToSpace x1" in text and "max abs error" in text
    model = load_model(out)
    assert [i.name for i in model.graph.input] == ["input"]
    assert main([*argv, "--size", "6x5x4", "--force"]) == 2
    assert "--size must have 2 entries" in capsys.readouterr().err


def test_graph_onnx_runtime_cannot_run_is_still_rewritten(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # ONNX Runtime has no float64 ConvTranspose kernel: the rewrite is written, verification says why it was skipped
    model = dcgan_layer()
    for t in model.graph.initializer:
        t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(t).astype(np.float64), t.name))
    model.graph.input[0].type.tensor_type.elem_type = TensorProto.DOUBLE
    model.graph.output[0].type.tensor_type.elem_type = TensorProto.DOUBLE
    src, out = save(model, tmp_path / "in64.onnx"), tmp_path / "out64.onnx"
    assert main(["onnx", "rewrite", str(src), "-o", str(out)]) == 0
    assert "verification skipped, ONNX Runtime cannot run the graphs" in capsys.readouterr().err
    assert [nd.op_type for nd in load_model(out).graph.node] == ["Conv", "DepthToSpace", "Slice"]


def test_missing_external_data_is_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = dcgan_layer()
    path = tmp_path / "ext.onnx"
    onnx.save_model(
        model,
        str(path),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location="ext.data",
        size_threshold=0,
    )
    assert load_model(path).graph.initializer[0].HasField("raw_data")  # loads with its data
    (tmp_path / "ext.data").unlink()
    assert main(["onnx", "rewrite", str(path), "-o", str(tmp_path / "out.onnx")]) == 2
    assert "cannot read its external data" in capsys.readouterr().err


def test_export_espcn_weights(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    models = pytest.importorskip("subpixel.sr.models")
    import torch

    model = models.ESPCN(3, widths=(8, 4))
    weights = models.save(model, tmp_path / "espcn.safetensors")
    out = tmp_path / "espcn.onnx"
    assert main(["onnx", "export", "-o", str(out), "--weights", str(weights), "--size", "7x9"]) == 0
    assert "max abs error" in capsys.readouterr().out
    exported = load_model(out)
    ops = [nd.op_type for nd in exported.graph.node]
    # the ESPCN layer is an LR conv + DepthToSpace: no crop, no ConvTranspose, no Reshape/Transpose
    assert ops.count("DepthToSpace") == 1 and "Slice" not in ops and "Transpose" not in ops, ops
    x = np.random.default_rng(0).random((1, 1, 7, 9), dtype=np.float32)
    from subpixel.onnx import run_onnx

    with torch.no_grad():
        want = model.eval()(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(run_onnx(exported, x)[0], want, rtol=0, atol=1e-5)


def test_initializers_listed_as_inputs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # old exports (keep_initializers_as_inputs=True) list the weights as graph inputs: overridable, so left by
    # default; --input-initializers-are-constant rewrites them
    model = dcgan_layer()
    for t in model.graph.initializer:
        model.graph.input.append(helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)))
    src = save(model, tmp_path / "old.onnx")
    out = tmp_path / "out.onnx"
    assert main(["onnx", "rewrite", str(src), "-o", str(out), "--no-verify"]) == 0
    assert "can be fed at run time" in capsys.readouterr().out
    assert [nd.op_type for nd in onnx.load(str(out)).graph.node] == ["ConvTranspose"]
    argv = ["onnx", "rewrite", str(src), "-o", str(out), "--force", "--input-initializers-are-constant"]
    assert main([*argv, "--repeats", "1"]) == 0
    text = capsys.readouterr().out
    assert "rewrote 1 node(s)" in text and "output y: max abs error" in text
    new = load_model(out)
    assert [nd.op_type for nd in new.graph.node] == ["Conv", "DepthToSpace", "Slice"]
    assert [i.name for i in new.graph.input] == ["x", "w", "b"]  # the interface is kept
    cmp = compare_models(model, new, repeats=1)
    assert cmp.max_abs_error["y"] < 1e-4
