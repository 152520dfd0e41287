"""Trusted labels: thresholds fitted on validation and stored in the model file, `wardrobe label`
(accepted.csv / review.csv, resume, errors) and the coverage-precision figures of `evaluate`."""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest
from conftest import make_folder_dataset
from typer.testing import CliRunner

import wardrobe
from wardrobe.cli import app
from wardrobe.errors import WardrobeError
from wardrobe.inference.labelling import label_catalogue
from wardrobe.models.modelfile import read_meta, resolve_model_path, update_meta
from wardrobe.selection import NEVER, _threshold, accept, coverage_at, fit_thresholds


@pytest.fixture(scope="module")
def labelled_run(tmp_path_factory):
    """A probe with enough validation photos (40) for thresholds at 90 % precision."""
    data = make_folder_dataset(tmp_path_factory.mktemp("many"), per_class=40, size=64)
    out = tmp_path_factory.mktemp("run") / "probe"
    wardrobe.train(data, out, val_ratio=0.25, seed=0, workers=0, show_progress=False)
    return out, data


def _rows(path):
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def test_threshold_counts_one_extra_error():
    conf = np.linspace(1.0, 0.5, 200)
    correct = np.ones(200, bool)
    correct[[120, 150, 160, 170, 180, 190]] = False
    t = _threshold(conf, correct, 0.98)
    kept = conf >= t
    errors = (~correct[kept]).sum()
    assert (errors + 1) / (kept.sum() + 1) <= 0.02
    # one more photo would break the rule: the threshold is the lowest that passes
    assert t == conf[kept].min() and kept.sum() >= 120
    assert _threshold(conf[:10], correct[:10], 0.98) == NEVER  # 10 photos cannot show 98 %
    plain = _threshold(conf, correct, 0.98, extra=0)  # the default rule: validation precision >= target
    kept = conf >= plain
    assert (~correct[kept]).sum() / kept.sum() <= 0.02 and plain <= t


def test_per_class_thresholds_where_the_data_allows():
    rng = np.random.default_rng(0)
    n = 600
    y = rng.integers(0, 3, n)
    y[:400] = 0  # class 0 has enough validation predictions for its own threshold
    probs = np.full((n, 3), 0.05)
    conf = rng.uniform(0.4, 1.0, n)
    right = rng.uniform(size=n) < conf  # confident predictions are mostly right
    pred = np.where(right, y, (y + 1) % 3)
    probs[np.arange(n), pred] = conf
    sel = fit_thresholds(probs, y, ["a", "b", "c"], targets=(0.95,))
    per = sel["targets"]["0.95"]["per_class"]
    assert per["a"] != sel["targets"]["0.95"]["global"]
    assert sel["n"] == n
    ok = accept(probs, ["a", "b", "c"], per)
    assert (probs.argmax(1)[ok] == y[ok]).mean() >= 0.95 - 1e-9
    c = coverage_at(probs, y, 0.95)  # one threshold for every class, chosen on these photos
    top = np.argsort(-probs.max(1), kind="stable")[:round(c * n)]
    assert (probs.argmax(1)[top] == y[top]).mean() >= 0.95


def test_training_stores_thresholds_and_label_splits_every_photo(labelled_run, tmp_path):
    trained_run, shapes_dir = labelled_run
    meta = read_meta(resolve_model_path(trained_run))
    assert set(meta["selection"]["targets"]) >= {"0.95", "0.98", "0.99"} and meta["selection"]["fitted_on"] == "validation"
    photos = tmp_path / "photos"
    shutil.copytree(shapes_dir, photos)
    (photos / "broken.jpg").write_bytes(b"not a photo")
    out = tmp_path / "labels"
    res = CliRunner().invoke(app, ["label", str(trained_run), str(photos), "--out", str(out), "--target-precision", "0.9"])
    assert res.exit_code == 0, res.output
    acc, rev = _rows(out / "accepted.csv"), _rows(out / "review.csv")
    everything = sorted(str(p) for p in photos.rglob("*.jpg"))
    assert sorted(r["path"] for r in acc + rev) == everything  # each photo in exactly one file
    assert len(acc) > 0 and list(acc[0]) == ["path", "label", "prob"]
    broken = [r for r in rev if r["path"].endswith("broken.jpg")]
    assert broken and broken[0]["error"] and rev[-1]["path"].endswith("broken.jpg")  # unreadable last
    probs = [float(r["prob"]) for r in rev if r["prob"] and r["label"] != "unknown"]
    assert probs == sorted(probs)  # the likeliest mistakes first
    summary = json.loads((out / "summary.json").read_text())
    assert summary["accepted"] == len(acc) and summary["review"] == len(rev)
    assert all(float(r["prob"]) >= summary["thresholds"][r["label"]] for r in acc)
    strict = CliRunner().invoke(app, ["label", str(trained_run), str(photos), "--out", str(tmp_path / "c"),
                                      "--target-precision", "0.9", "--conservative"])
    assert strict.exit_code == 0, strict.output
    assert len(_rows(tmp_path / "c" / "accepted.csv")) <= len(acc)
    assert json.loads((tmp_path / "c" / "summary.json").read_text())["rule"] == "conservative"
    again = CliRunner().invoke(app, ["label", str(trained_run), str(photos), "--out", str(out)])
    assert isinstance(again.exception, WardrobeError) and "--resume" in str(again.exception)


def test_label_resumes_without_duplicates(labelled_run, tmp_path):
    trained_run, shapes_dir = labelled_run
    out = tmp_path / "labels"
    files = sorted(shapes_dir.rglob("*.jpg"))
    label_catalogue(trained_run, [str(p) for p in files[:10]], out, 0.9, workers=0, show_progress=False)
    s = label_catalogue(trained_run, [str(shapes_dir)], out, 0.9, workers=0, resume=True, show_progress=False)
    assert s.skipped == 10 and s.accepted + s.review == len(files) - 10
    paths = [r["path"] for r in _rows(out / "accepted.csv") + _rows(out / "review.csv")]
    assert sorted(paths) == sorted(map(str, files))


def test_label_needs_thresholds_for_the_target(trained_run, tmp_path, shapes_dir):
    with pytest.raises(WardrobeError, match="no thresholds fitted for it"):
        label_catalogue(trained_run, [str(shapes_dir)], tmp_path / "x", 0.975, show_progress=False)
    copy = tmp_path / "model.safetensors"
    shutil.copy(resolve_model_path(trained_run), copy)
    update_meta(copy, {"selection": None})
    with pytest.raises(WardrobeError, match="--calibrate"):
        label_catalogue(copy, [str(shapes_dir)], tmp_path / "y", 0.98, show_progress=False)


def test_evaluate_reports_coverage_at_precision_and_the_curve(trained_run, shapes_dir, tmp_path):
    out = tmp_path / "eval"
    res = wardrobe.evaluate(trained_run, shapes_dir, out, show_progress=False, workers=0)
    t = res["trusted_labels"]
    assert set(t["coverage_at_precision"]) == {"0.95", "0.98", "0.99"}
    assert 0 <= t["coverage_at_precision"]["0.99"] <= t["coverage_at_precision"]["0.95"] <= 1
    assert "0.98" in t["stored"]["targets"] and "0.98" in t["stored"]["conservative"]
    assert (out / "coverage_precision.png").stat().st_size > 1000
    html = (out / "report.html").read_text()
    assert 'id="trusted-labels"' in html and "coverage-precision curve" in html
    assert json.loads((out / "metrics.json").read_text())["trusted_labels"] == json.loads(json.dumps(t))


def test_calibration_refits_the_thresholds_at_the_new_temperature(trained_run, shapes_dir, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    wardrobe.evaluate(run, shapes_dir, calibrate=True, show_progress=False, workers=0)
    meta = read_meta(resolve_model_path(run))
    assert meta["selection"]["temperature"] == pytest.approx(meta["temperature"])


def _noise_photos(folder, n=12):
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(folder / f"noise_{i}.png")
    return folder


def test_unknown_detector_is_stored_and_reported(labelled_run, tmp_path):
    run, data = labelled_run
    clf = wardrobe.Classifier.load(run)
    assert clf.unknown["score"] == "knn_cosine_distance" and clf.unknown["false_unknown_target"] == 0.05
    assert clf.bank is not None and clf.bank.shape[0] == clf.unknown["bank"]
    noise = _noise_photos(tmp_path / "noise")
    res = wardrobe.evaluate(run, data, tmp_path / "eval", show_progress=False, workers=0, unknown=noise)
    u = json.loads((tmp_path / "eval" / "metrics.json").read_text())["unknown"]
    assert u == json.loads(json.dumps(res["unknown"]))
    assert u["auroc"] > 0.9 and u["detected"] >= 0.9 and u["false_unknown"] <= 0.2 and u["n_unknown"] == 12
    out = tmp_path / "labels"
    label_catalogue(run, [str(noise), str(data / "circle")], out, 0.9, workers=0, show_progress=False)
    rev = _rows(out / "review.csv")
    flagged = [r for r in rev if r["label"] == "unknown"]
    assert len(flagged) >= 11 and all(r["model_label"] in ("circle", "square", "triangle") for r in flagged)
    assert not any("noise_" in r["path"] for r in _rows(out / "accepted.csv"))


def test_unknown_needs_a_detector(trained_run, shapes_dir, tmp_path):
    copy = tmp_path / "model.safetensors"
    shutil.copy(resolve_model_path(trained_run), copy)
    update_meta(copy, {"unknown": None})
    assert wardrobe.Classifier.load(copy).unknown is None
    with pytest.raises(WardrobeError, match="no unknown-photo detector"):
        wardrobe.evaluate(copy, shapes_dir, show_progress=False, workers=0, unknown=shapes_dir)
