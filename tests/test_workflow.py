"""The core chain end to end on synthetic photos: train -> model file -> evaluate -> predict,
through the Python API and the CLI."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
from conftest import make_folder_dataset, shape_image
from PIL import Image
from typer.testing import CliRunner

import wardrobe
from wardrobe.cli import app
from wardrobe.errors import WardrobeError

runner = CliRunner()


def test_train_writes_run_folder(trained_run):
    assert {p.name for p in trained_run.iterdir()} >= {"model.safetensors", "config.json", "metrics.json"}
    metrics = json.loads((trained_run / "metrics.json").read_text())
    assert metrics["split"] == "validation" and metrics["n_images"] == 9
    assert metrics["accuracy"] == 1.0  # coloured shapes are trivially separable
    config = json.loads((trained_run / "config.json").read_text())
    assert config["mode"] == "probe" and config["model"] == "efficientnet_lite1" and config["levels"] == 3
    assert config["head"]["C"] in config["head"]["C_grid"]


def test_rerun_uses_embedding_cache(shapes_dir, trained_run, tmp_path):
    result = wardrobe.train(shapes_dir, tmp_path / "again", val_ratio=0.25, workers=0, show_progress=False)
    emb = result.metrics["timings"]["embeddings"]
    assert emb["extracted"] == 0 and emb["cached"] == 36


def test_cache_is_keyed_by_content(tmp_path):
    # 80 px photos: content unlike the session's other photos, so none is cached yet
    data = make_folder_dataset(tmp_path / "d", per_class=4, shapes=("circle", "square"), size=80)
    first = wardrobe.train(data, tmp_path / "r1", val_ratio=0.5, workers=0, show_progress=False)
    assert first.metrics["timings"]["embeddings"]["extracted"] == 8
    shape_image("square", 999).save(data / "circle" / "circle_000.jpg")  # same name, new content
    second = wardrobe.train(data, tmp_path / "r2", val_ratio=0.5, workers=0, show_progress=False)
    assert second.metrics["timings"]["embeddings"]["extracted"] == 1


def test_classifier_api_predicts_paths_and_pil(trained_run, shapes_dir):
    clf = wardrobe.Classifier.load(trained_run)
    paths = [shapes_dir / "square" / "square_000.jpg", shapes_dir / "triangle" / "triangle_001.jpg"]
    rows = clf.predict([*paths, shape_image("circle", 4242)], top_k=2)
    assert [r["label"] for r in rows] == ["square", "triangle", "circle"]
    assert all(len(r["top_k"]) == 2 and r["top_k"][0][1] >= r["top_k"][1][1] for r in rows)
    assert all(0.0 <= r["prob"] <= 1.0 for r in rows)


@pytest.mark.parametrize("runtime", ["torch", "onnx"])
def test_runtimes_agree(trained_run, shapes_dir, runtime):
    files = sorted((shapes_dir / "circle").glob("*.jpg"))[:4]
    ref, _ = wardrobe.Classifier.load(trained_run, runtime="torch").predict_proba(files, show_progress=False)
    got, _ = wardrobe.Classifier.load(trained_run, runtime=runtime).predict_proba(files, show_progress=False)
    assert np.allclose(ref, got, atol=1e-4)


def test_evaluate_writes_metrics_and_confusion(trained_run, shapes_dir, tmp_path):
    res = runner.invoke(app, ["evaluate", str(trained_run), str(shapes_dir), "--out", str(tmp_path / "ev"),
                              "--split", "all"])
    assert res.exit_code == 0, res.output
    m = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    for key in ("accuracy", "f1_macro", "f1_weighted", "map_macro", "top3_accuracy", "n_images", "per_class"):
        assert key in m
    assert m["n_images"] == 36 and m["accuracy"] == 1.0 and m["split"] == "all"
    assert set(m["per_class"]["circle"]) >= {"precision", "recall", "f1", "support"}
    cm = list(csv.reader((tmp_path / "ev" / "confusion_matrix.csv").open()))
    assert cm[0][1:] == ["circle", "square", "triangle"] and cm[1][1:] == ["12", "0", "0"]
    assert Image.open(tmp_path / "ev" / "confusion_matrix.png").size[0] > 500
    assert (tmp_path / "ev" / "confusion_matrix_normalized.csv").is_file()
    assert "macro avg" in res.output
    own = runner.invoke(app, ["evaluate", str(trained_run), str(shapes_dir)])  # no --split: its validation photos
    assert own.exit_code == 0 and "(validation, 9 photos)" in own.output


def test_evaluate_matches_labels_ignoring_case(trained_run, tmp_path):
    d = tmp_path / "d"
    make_folder_dataset(d, per_class=2, shapes=("circle",))
    (d / "circle").rename(d / "Circle")
    m = wardrobe.evaluate(trained_run, d, show_progress=False)
    assert m["n_images"] == 2 and m["accuracy"] == 1.0


def test_evaluate_unknown_labels_name_them(trained_run, tmp_path):
    d = tmp_path / "d"
    make_folder_dataset(d, per_class=2, shapes=("circle",))
    shutil.copytree(d / "circle", d / "hexagon")
    res = runner.invoke(app, ["evaluate", str(trained_run), str(d)])
    assert res.exit_code != 0
    with pytest.raises(WardrobeError, match="labels unknown to the model: hexagon"):
        wardrobe.evaluate(trained_run, d)


def test_predict_csv_json_and_bad_files(trained_run, shapes_dir, tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "zero.jpg").write_bytes(b"")
    (bad / "text.jpg").write_text("nope")
    shutil.copy(shapes_dir / "square" / "square_001.jpg", bad / "good.jpg")
    out = tmp_path / "preds.csv"
    res = runner.invoke(app, ["predict", str(trained_run), str(bad), str(shapes_dir / "circle" / "circle_00*.jpg"),
                              str(tmp_path / "missing.jpg"), "--top-k", "2", "--output", str(out)])
    assert res.exit_code == 0, res.output
    rows = {r["path"].rsplit("/", 1)[-1]: r for r in csv.DictReader(out.open())}
    assert len(rows) == 3 + 10 + 1
    assert rows["good.jpg"]["label_1"] == "square" and rows["good.jpg"]["error"] == ""
    assert rows["zero.jpg"]["error"].startswith("empty file") and rows["zero.jpg"]["label_1"] == ""
    assert rows["text.jpg"]["error"].startswith("not an image")
    assert rows["missing.jpg"]["error"] == "missing file"
    assert rows["circle_003.jpg"]["label_1"] == "circle" and float(rows["circle_003.jpg"]["prob_1"]) > 0.5
    assert set(rows["good.jpg"]) == {"path", "label_1", "prob_1", "label_2", "prob_2", "error"}

    res = runner.invoke(app, ["predict", str(trained_run), str(bad / "good.jpg"), "--format", "json"])
    data = json.loads(res.stdout)
    assert data[0]["label"] == "square" and len(data[0]["top_k"]) == 3 and data[0]["error"] is None


def test_cli_errors_are_one_line_without_traceback(tmp_path):
    (tmp_path / "m.csv").write_text("file,label\na.jpg,x\n")
    proc = subprocess.run([sys.executable, "-m", "wardrobe.cli", "train", str(tmp_path / "m.csv"), "--out",
                           str(tmp_path / "o")], capture_output=True, text=True)
    assert proc.returncode == 2
    lines = [l for l in proc.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "no image column 'image'" in lines[0]
    assert "Traceback" not in proc.stderr

    (tmp_path / "fake.safetensors").write_bytes(b"junk")
    proc = subprocess.run([sys.executable, "-m", "wardrobe.cli", "predict", str(tmp_path / "fake.safetensors"),
                           str(tmp_path)], capture_output=True, text=True)
    assert proc.returncode == 2 and "not a wardrobe model file" in proc.stderr and "Traceback" not in proc.stderr


def test_train_strict_fails_on_bad_photo(tmp_path):
    d = make_folder_dataset(tmp_path / "d", per_class=4, shapes=("circle", "square"))
    (d / "circle" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0garbage")
    result = wardrobe.train(d, tmp_path / "ok", val_ratio=0.5, workers=0, show_progress=False)
    assert result.metrics["skipped"]["count"] == 1
    assert "broken.jpg" in result.metrics["skipped"]["items"][0]["where"]
    with pytest.raises(WardrobeError, match="broken.jpg"):
        wardrobe.train(d, tmp_path / "strict", val_ratio=0.5, workers=0, strict=True, show_progress=False)


def test_train_needs_two_classes(tmp_path):
    d = make_folder_dataset(tmp_path / "d", per_class=4, shapes=("circle",))
    with pytest.raises(WardrobeError, match="at least 2 classes"):
        wardrobe.train(d, tmp_path / "o", workers=0, show_progress=False)


def test_datasets_and_models_commands(monkeypatch, tmp_path):
    monkeypatch.setenv("WARDROBE_DATA_DIR", str(tmp_path))
    res = runner.invoke(app, ["datasets"])
    assert res.exit_code == 0 and "clothing-top10" in res.output and "clothing-17" in res.output
    res = runner.invoke(app, ["models"], terminal_width=200)
    assert res.exit_code == 0 and "efficientnet_lite2" in res.output and "mobilenet_v1" in res.output
    from wardrobe.models.registry import model_catalogue

    rows = {r["name"]: r for r in model_catalogue()}
    assert rows["efficientnet_lite0"]["pretrained"] == "offline package" and rows["efficientnet_lite0"]["input_size"] == 224
    assert 4.0 < rows["efficientnet_lite0"]["params_m"] < 5.0  # 4.65 M with a 1000-class head
    assert rows["alexnet"]["pretrained"].startswith("none")
