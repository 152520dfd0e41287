"""ONNX export: metadata, fp32 parity with PyTorch, int8 quantisation, and exported files used by
predict; the int8 agreement on real photos is a slow test."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from conftest import real_data_root, shape_image
from typer.testing import CliRunner

import wardrobe
from wardrobe.cli import app
from wardrobe.data.images import load_image
from wardrobe.errors import WardrobeError
from wardrobe.inference.classifier import Classifier
from wardrobe.inference.export import export_model
from wardrobe.inference.onnxfile import read_onnx_meta
from wardrobe.models.modelfile import load_model
from wardrobe.transforms import Preprocess

runner = CliRunner()


def _pixels(paths, pre: Preprocess) -> torch.Tensor:
    return torch.stack([pre.pixels(load_image(p, min_side=pre.resize_to)) for p in paths])


@pytest.fixture(scope="module")
def exported(trained_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("export")
    return export_model(trained_run, out / "model.onnx"), export_model(trained_run, out / "model.int8.onnx", int8=True)


def test_onnx_carries_classes_preprocessing_and_version(trained_run, exported):
    fp32, int8 = exported
    _, meta = load_model(trained_run)
    props = {p.key: p.value for p in onnx.load(str(fp32)).metadata_props}
    assert json.loads(props["wardrobe.classes"]) == meta["classes"] == ["circle", "square", "triangle"]
    assert json.loads(props["wardrobe.preprocess"]) == meta["preprocess"]
    assert props["wardrobe.version"] == wardrobe.__version__
    assert props["wardrobe.quantization"] == "none"
    assert read_onnx_meta(int8)["quantization"] == "weights-int8-per-channel"
    sess = ort.InferenceSession(str(fp32), providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == ["pixels"]
    assert [o.name for o in sess.get_outputs()] == ["logits", "probabilities"]


def test_fp32_probabilities_match_pytorch(trained_run, shapes_dir, exported):
    model, meta = load_model(trained_run)
    pre = Preprocess.from_dict(meta["preprocess"])
    paths = sorted(shapes_dir.rglob("*.jpg"))[::4]
    x = pre.normalize(_pixels(paths, pre))
    with torch.inference_mode():
        ref = torch.softmax(model(x) / meta.get("temperature", 1.0), dim=1).numpy()
    sess = ort.InferenceSession(str(exported[0]), providers=["CPUExecutionProvider"])
    logits, probs = sess.run(None, {"pixels": x.numpy()})
    assert probs.shape == ref.shape == (len(paths), 3)
    assert np.abs(probs - ref).max() < 1e-4
    assert np.allclose(probs.sum(1), 1.0, atol=1e-5)


def test_every_entry_point_takes_an_onnx_file(trained_run, shapes_dir, exported):
    """Classifier.load, wardrobe.predict and wardrobe.evaluate accept an export as the CLI does."""
    import wardrobe

    fp32, _ = exported
    photo = sorted((shapes_dir / "triangle").glob("*.jpg"))[0]
    assert Classifier.load(fp32).predict([photo])[0]["label"] == "triangle"
    assert wardrobe.predict(fp32, [photo])[0]["label"] == "triangle"
    m = wardrobe.evaluate(fp32, shapes_dir, show_progress=False)
    assert m["accuracy"] == wardrobe.evaluate(trained_run, shapes_dir, show_progress=False)["accuracy"]


def test_numpy_normalisation_equals_torch():
    # the ONNX path normalises in NumPy (no torch op before ONNX Runtime): the same float32 values
    pre = Preprocess(input_size=32, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    x = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    assert np.array_equal(pre.normalize_array(x.numpy()), pre.normalize(x).numpy())


def test_same_padding_is_fixed_at_export(tmp_path):
    # TF-style "same" padding (EfficientNet-Lite) is computed from the input shape at run time;
    # the export fixes it for the model's input size: same outputs, no shape arithmetic in the graph.
    from timm.layers import Conv2dSame

    from wardrobe.models.runtime import export_onnx, static_same_padding

    torch.manual_seed(0)
    net = torch.nn.Sequential(Conv2dSame(3, 4, 3, stride=2), torch.nn.ReLU(),
                              torch.nn.Sequential(Conv2dSame(4, 4, 5, stride=2, groups=4)),
                              torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten()).eval()
    x = torch.randn(2, 3, 36, 36)  # an even size: stride-2 "same" pads are asymmetric (0 before, 1 after)
    fixed = static_same_padding(net, 36)
    assert isinstance(net[0], Conv2dSame) and not isinstance(fixed[0], Conv2dSame)  # the original is untouched
    with torch.no_grad():
        assert torch.allclose(fixed(x), net(x), atol=1e-6)
    path = export_onnx(net, 36, tmp_path / "same.onnx")
    graph = onnx.load(str(path)).graph
    ops = {n.op_type for n in graph.node}
    assert not ops & {"Shape", "Ceil", "Gather"}, ops
    # the asymmetric pads live in the Convs, not in Pad nodes (which break ONNX Runtime's NCHWc chain)
    assert "Pad" not in ops, ops
    pads = [list(a.ints) for n in graph.node if n.op_type == "Conv" for a in n.attribute if a.name == "pads"]
    assert pads == [[0, 0, 1, 1], [1, 1, 2, 2]], pads
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    out = sess.run(None, {"pixels": x.numpy()})[0]
    np.testing.assert_allclose(out, net(x).detach().numpy(), atol=1e-5)


def test_int8_export_is_smaller_and_predicts_the_shapes(trained_run, shapes_dir, exported):
    from onnx import numpy_helper

    from wardrobe.inference.onnxfile import dequantized_bytes

    fp32, int8 = exported
    assert int8.stat().st_size < 0.5 * fp32.stat().st_size  # int8 weights: about a quarter of the bytes
    proto = onnx.load(str(int8))
    int8_weights = [t for t in proto.graph.initializer if t.data_type == onnx.TensorProto.INT8]
    convs = [n for n in proto.graph.node if n.op_type == "Conv"]
    assert len(int8_weights) >= len(convs)  # the output-side half of the convs: int8 weights and zero points
    # each output channel keeps its own scale: the largest weight of every channel maps to +-127
    q = numpy_helper.to_array(int8_weights[0]).reshape(len(numpy_helper.to_array(int8_weights[0])), -1)
    assert (np.abs(q).max(axis=1) == 127).mean() > 0.9
    # plain ONNX Runtime reads the file as it is; wardrobe folds the weights back once at load
    pre = read_onnx_meta(int8)["preprocess"]
    pre = Preprocess.from_dict(pre)
    x = pre.normalize_array(_pixels(sorted(shapes_dir.rglob("*.jpg"))[::6], pre).numpy())
    raw = ort.InferenceSession(str(int8), providers=["CPUExecutionProvider"]).run(["logits"], {"pixels": x})[0]
    folded = ort.InferenceSession(dequantized_bytes(int8), providers=["CPUExecutionProvider"]).run(["logits"], {"pixels": x})[0]
    ref = ort.InferenceSession(str(fp32), providers=["CPUExecutionProvider"]).run(["logits"], {"pixels": x})[0]
    np.testing.assert_allclose(raw, folded, atol=1e-4)
    assert 0 < np.abs(folded - ref).max() < 0.1 * np.abs(ref).max()  # rounded weights, not the same ones
    assert (folded.argmax(1) == ref.argmax(1)).all()
    assert dequantized_bytes(fp32) is None
    paths = sorted(shapes_dir.rglob("*.jpg"))
    clf8 = Classifier.load(int8)
    rows = clf8.predict(paths, top_k=2)
    assert [r["label"] for r in rows] == [p.parent.name for p in paths]
    # the exported fp32 file gives what the model file gives
    a = Classifier.load(fp32).predict_proba(paths, show_progress=False, workers=0)[0]
    b = wardrobe.Classifier.load(trained_run, runtime="torch").predict_proba(paths, show_progress=False, workers=0)[0]
    assert np.abs(a - b).max() < 1e-4


def test_dynamic_int8_scheme(trained_run, shapes_dir, tmp_path):
    out = export_model(trained_run, tmp_path / "d.onnx", int8=True, scheme="dynamic")
    assert read_onnx_meta(out)["quantization"] == "dynamic-int8"
    ops = [n.op_type for n in onnx.load(str(out)).graph.node]
    assert "ConvInteger" in ops and "MatMulInteger" not in ops  # backbone in int8, the linear head in float
    paths = sorted(shapes_dir.rglob("*.jpg"))
    assert [r["label"] for r in Classifier.load(out).predict(paths)] == [p.parent.name for p in paths]
    with pytest.raises(WardrobeError, match="--int8-scheme"):
        export_model(trained_run, tmp_path / "e.onnx", int8=True, scheme="int4")
    with pytest.raises(WardrobeError, match="needs --calibrate"):
        export_model(trained_run, tmp_path / "e.onnx", int8=True, scheme="static")


def test_static_int8_calibrated_on_photos(trained_run, shapes_dir, tmp_path):
    from wardrobe.inference.export import calibration_photos

    photos = calibration_photos(str(shapes_dir), n=12)
    assert len(photos) == 12 and len({p.parent.name for p in photos}) == 3  # spread over the classes
    out = export_model(trained_run, tmp_path / "s.onnx", int8=True, calibrate=photos)
    assert read_onnx_meta(out)["quantization"] == "static-int8-per-channel"
    graph = onnx.load(str(out)).graph
    ops = {n.op_type for n in graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops and "Softmax" in ops
    # the input-side third of the convolutions keeps float weights; the rest read dequantised int8
    dequantized = {o for n in graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    convs = [n for n in graph.node if n.op_type == "Conv"]
    int8_weights = [c.input[1] in dequantized for c in convs]
    n_float = round(len(convs) / 3)
    assert not any(int8_weights[:n_float]) and any(int8_weights[n_float:]), int8_weights
    paths = sorted(shapes_dir.rglob("*.jpg"))
    assert [r["label"] for r in Classifier.load(out).predict(paths)] == [p.parent.name for p in paths]
    with pytest.raises(WardrobeError, match="int8"):
        export_model(trained_run, tmp_path / "x.onnx", calibrate=photos)


def test_cli_export_then_predict_with_the_export(trained_run, shapes_dir, tmp_path):
    out = tmp_path / "m.int8.onnx"
    res = runner.invoke(app, ["export", str(trained_run), "--format", "onnx", "--int8", "--output", str(out)])
    assert res.exit_code == 0, res.output
    assert out.is_file() and read_onnx_meta(out)["classes"] == ["circle", "square", "triangle"]
    photo = tmp_path / "q.png"
    shape_image("triangle", 77).save(photo)
    res = runner.invoke(app, ["predict", str(out), str(photo), "--format", "jsonl"])
    assert res.exit_code == 0, res.output
    row = json.loads(res.stdout.strip().splitlines()[-1])
    assert row["label"] == "triangle" and row["error"] is None


def test_export_errors_are_one_line(trained_run, tmp_path):
    bad = tmp_path / "not-a-model.safetensors"
    bad.write_text("hello")
    res = runner.invoke(app, ["export", str(bad)])
    assert res.exit_code != 0 and isinstance(res.exception, WardrobeError)
    assert "not a wardrobe model file" in str(res.exception)
    with pytest.raises(WardrobeError, match="--format"):
        export_model(trained_run, tmp_path / "x.tflite", fmt="tflite")
    foreign = tmp_path / "foreign.onnx"
    foreign.write_bytes(b"\x08\x07not really onnx")
    with pytest.raises(WardrobeError, match="foreign.onnx"):
        Classifier.load(foreign)
    with pytest.raises(WardrobeError, match="ONNX Runtime only"):
        Classifier.load(tmp_path / "m.onnx", runtime="torch")


@pytest.mark.slow
@pytest.mark.skipif(real_data_root() is None, reason="WARDROBE_DATA_DIR has no clothing-dataset")
def test_int8_top1_agrees_with_fp32_on_clothing_top10_validation(tmp_path_factory):
    from wardrobe.data import load_dataset

    run = tmp_path_factory.mktemp("top10-int8")
    wardrobe.train("clothing-top10", run, show_progress=False)
    fp32 = export_model(run, run / "model.onnx")
    int8 = export_model(run, run / "model.int8.onnx", int8=True)
    paths = [r.path for r in load_dataset("clothing-top10").split("validation")]
    assert len(paths) == 341
    p32, e32 = Classifier.load(fp32).predict_proba(paths, show_progress=False)
    p8, e8 = Classifier.load(int8).predict_proba(paths, show_progress=False)
    assert not e32 and not e8
    agree = float((p32.argmax(1) == p8.argmax(1)).mean())
    print(f"int8 vs fp32 top-1 agreement on {len(paths)} validation photos: {agree:.4f}")
    assert agree >= 0.99, agree
