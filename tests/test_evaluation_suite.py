"""Evaluation suite: metrics against hand-computed cases, folds, corruptions, calibration, speed,
the HTML report and the cv / compare / bench / evaluate commands on tiny data."""

from __future__ import annotations

import json
import shutil
from html.parser import HTMLParser

import numpy as np
import pytest
import torch
from conftest import real_data_root
from typer.testing import CliRunner

runner = CliRunner()

# Hand-computed case: 3 classes, class c is never predicted.
Y = np.array([0, 0, 0, 1, 1, 2])
P = np.array([[0.8, 0.1, 0.1], [0.6, 0.3, 0.1], [0.3, 0.5, 0.2],
              [0.2, 0.7, 0.1], [0.5, 0.4, 0.1], [0.1, 0.5, 0.4]])


def test_metrics_match_hand_computed_values_with_a_class_never_predicted():
    from wardrobe.metrics import compute_metrics

    m = compute_metrics(Y, P, ["a", "b", "c"])
    # predictions 0,0,1,1,0,1: three right
    assert m["accuracy"] == pytest.approx(0.5)
    # F1: a = 2/3 (P 2/3, R 2/3), b = 0.4 (P 1/3, R 1/2), c = 0 (never predicted)
    assert m["per_class"]["a"]["f1"] == pytest.approx(2 / 3)
    assert m["per_class"]["b"]["f1"] == pytest.approx(0.4)
    assert m["per_class"]["c"]["f1"] == 0.0 and m["per_class"]["c"]["precision"] == 0.0
    assert m["f1_macro"] == pytest.approx((2 / 3 + 0.4 + 0) / 3)
    assert m["f1_weighted"] == pytest.approx((3 * 2 / 3 + 2 * 0.4 + 0) / 6)
    # AP: a ranks + + - + -> (1 + 1 + 3/4) / 3; b ranks + - - + -> (1 + 2/4) / 2; c ranks its photo first -> 1
    assert m["per_class"]["a"]["ap"] == pytest.approx(2.75 / 3)
    assert m["per_class"]["b"]["ap"] == pytest.approx(0.75)
    assert m["map_macro"] == pytest.approx((2.75 / 3 + 0.75 + 1) / 3)
    assert m["confusion_matrix"] == [[2, 1, 0], [1, 1, 0], [0, 1, 0]]


def test_ece_matches_hand_computed_value():
    from wardrobe.evaluation.calibration import expected_calibration_error, reliability_bins

    # confidences 0.8, 0.6, 0.5, 0.7, 0.5, 0.5; right, right, wrong, right, wrong, wrong.
    # bins: {0.5 x3: acc 0} -> 3/6 * 0.5; {0.6}: 0.4/6; {0.7}: 0.3/6; {0.8}: 0.2/6
    assert expected_calibration_error(P, Y) == pytest.approx(0.25 + 0.9 / 6)
    bins = reliability_bins(P, Y)
    assert len(bins) == 15 and sum(b["count"] for b in bins) == 6
    assert expected_calibration_error(np.eye(3), np.arange(3)) == pytest.approx(0.0)


def _overconfident(n=3000, k=5, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    logits = rng.normal(0, 1, (n, k))
    logits[np.arange(n), y] += 1.5
    return logits * 4.0, y  # right ~75% of the time, but scaled logits make it sure of itself


def test_temperature_scaling_lowers_ece_of_an_overconfident_model():
    from wardrobe.evaluation.calibration import expected_calibration_error
    from wardrobe.metrics import fit_temperature, nll, softmax

    logits, y = _overconfident()
    t = fit_temperature(logits, y)
    assert 2.5 < t < 6.0  # the logits were inflated 4x
    before = expected_calibration_error(softmax(logits), y)
    after = expected_calibration_error(softmax(logits, t), y)
    assert before > 0.1 and after < before / 3
    assert nll(logits, y, t) < nll(logits, y, 1.0)
    assert nll(logits, y, t) <= min(nll(logits, y, t * 1.1), nll(logits, y, t / 1.1))


def test_folds_are_stratified_disjoint_and_cover_the_data():
    from wardrobe.errors import WardrobeError
    from wardrobe.evaluation.cv import make_folds

    labels = np.array(["a"] * 50 + ["b"] * 20 + ["c"] * 10)
    folds = make_folds(labels, 5, seed=3)
    assert len(folds) == 5
    vals = np.concatenate([va for _, va in folds])
    assert sorted(vals.tolist()) == list(range(80))  # every photo validated exactly once
    for tr, va in folds:
        assert not set(tr) & set(va) and len(tr) + len(va) == 80
        counts = {c: int((labels[va] == c).sum()) for c in "abc"}
        assert counts == {"a": 10, "b": 4, "c": 2}
    again = make_folds(labels, 5, seed=3)
    assert all((a[1] == b[1]).all() for a, b in zip(folds, again))
    assert not all((a[1] == b[1]).all() for a, b in zip(folds, make_folds(labels, 5, seed=4)))
    with pytest.raises(WardrobeError, match="'c'"):
        make_folds(np.array(["a"] * 10 + ["c"] * 3), 5)


def test_aggregate_mean_and_std():
    from wardrobe.evaluation.cv import aggregate

    agg = aggregate([{"accuracy": 0.8, "f1_macro": 0.5, "f1_weighted": 0.7, "map_macro": 0.9},
                     {"accuracy": 0.9, "f1_macro": 0.7, "f1_weighted": 0.7, "map_macro": 0.9}])
    assert agg["accuracy"]["mean"] == pytest.approx(0.85) and agg["accuracy"]["std"] == pytest.approx(0.05)
    assert agg["f1_weighted"]["std"] == 0.0


@pytest.mark.parametrize("sigma", [0.05, 0.1, 0.2])
def test_gaussian_noise_has_the_stated_sigma_and_is_seeded(sigma):
    from wardrobe.evaluation.robustness import corrupt

    x = torch.full((4, 3, 64, 64), 0.5)
    out = corrupt(f"gaussian_noise_{sigma}", x, seed=1)
    # at sigma 0.2 clipping to [0, 1] (2.5 sigma away) trims the spread by a percent or so
    assert (out - x).std().item() == pytest.approx(sigma, rel=0.05)
    assert out.mean().item() == pytest.approx(0.5, abs=0.01)
    assert out.min() >= 0 and out.max() <= 1
    assert torch.equal(out, corrupt(f"gaussian_noise_{sigma}", x, seed=1))
    assert not torch.equal(out, corrupt(f"gaussian_noise_{sigma}", x, seed=2))


def test_brightness_blur_and_jpeg_change_pixels_as_specified():
    from wardrobe.evaluation.robustness import CORRUPTIONS, corrupt

    assert set(CORRUPTIONS) == {"gaussian_noise_0.05", "gaussian_noise_0.1", "gaussian_noise_0.2", "gaussian_blur",
                                "jpeg_q20", "brightness_-40%", "brightness_+40%"}
    g = torch.Generator().manual_seed(0)
    x = torch.rand((2, 3, 64, 64), generator=g) * 0.7  # below 1/1.4: brightening never clips
    assert corrupt("brightness_-40%", x).mean().item() == pytest.approx(0.6 * x.mean().item(), rel=1e-5)
    assert corrupt("brightness_+40%", x).mean().item() == pytest.approx(1.4 * x.mean().item(), rel=1e-5)
    assert corrupt("brightness_+40%", torch.ones(1, 3, 8, 8)).max() == 1.0  # clipped
    blurred = corrupt("gaussian_blur", x)
    assert blurred.shape == x.shape and blurred.var().item() < 0.2 * x.var().item()  # white noise loses detail
    flat = torch.full((1, 3, 32, 32), 0.3)
    assert torch.allclose(corrupt("gaussian_blur", flat), flat, atol=1e-6)
    # JPEG q20 on a smooth photo-like image: pixels change, but the picture stays close
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 64), torch.linspace(0, 1, 64), indexing="ij")
    smooth = torch.stack([xx, yy, (xx + yy) / 2]).unsqueeze(0) * 0.8 + 0.1
    q20 = corrupt("jpeg_q20", smooth)
    diff = (q20 - smooth).abs().mean().item()
    assert 0.002 < diff < 0.05 and q20.min() >= 0 and q20.max() <= 1


def test_params_and_mflops_of_a_known_network():
    from wardrobe.evaluation.speed import params_and_mflops

    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1, bias=False), torch.nn.Flatten())
    params, mflops = params_and_mflops(net, 8)
    assert params == 3 * 4 * 9
    assert mflops == pytest.approx(2 * 3 * 4 * 9 * 64 / 1e6)  # a multiply-add counts 2


def test_cpu_model_tells_hosts_with_the_same_name_apart(tmp_path):
    from wardrobe.evaluation.speed import cpu_model

    def info(model, flags):
        return (f"processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: {model[0]}\nmodel\t\t: {model[1]}\n"
                f"model name\t: AMD EPYC\nflags\t\t: fpu sse2 {flags}\n\nprocessor\t: 1\nflags\t\t: avx512_vnni\n")

    wide, narrow = tmp_path / "avx512", tmp_path / "avx2"
    wide.write_text(info((25, 17), "avx2 avx512f avx512_vnni"))
    narrow.write_text(info((23, 49), "avx2"))  # the second processor's flags must not leak into the first's
    assert cpu_model(wide) == "AMD EPYC (family 25 model 17, AVX-512 VNNI)"
    assert cpu_model(narrow) == "AMD EPYC (family 23 model 49, AVX2)"
    assert cpu_model(tmp_path / "absent")  # no /proc (macOS): still a name, never an error


class _Sections(HTMLParser):
    def __init__(self):
        super().__init__()
        self.ids, self.imgs, self.external = set(), 0, []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "section":
            self.ids.add(a.get("id"))
        if tag == "img":
            self.imgs += 1
            if not a.get("src", "").startswith("data:image/"):
                self.external.append(a.get("src"))
        if tag in ("script", "link"):
            self.external.append(tag)


def _parse(path):
    p = _Sections()
    p.feed(path.read_text(encoding="utf-8"))
    p.close()
    return p


def test_evaluate_with_robustness_calibration_and_report(trained_run, shapes_dir, tmp_path):
    import wardrobe
    from wardrobe.evaluation.report import SECTIONS
    from wardrobe.models.modelfile import read_meta

    run = tmp_path / "run"
    shutil.copytree(trained_run, run)  # --calibrate rewrites the model file
    out = tmp_path / "eval"
    m = wardrobe.evaluate(run, shapes_dir, out, split="all", robustness=True, calibrate=True, workers=0,
                          show_progress=False)
    rob = m["robustness"]
    assert rob["n_images"] == 36 and len(rob["corruptions"]) == 7
    for r in rob["corruptions"].values():
        assert r["accuracy_drop"] == pytest.approx(rob["clean"]["accuracy"] - r["accuracy"])
    assert rob["clean"]["accuracy"] == pytest.approx(m["accuracy"])
    cal = m["calibration"]
    assert cal["fitted_on"]["split"] == "validation" and cal["fitted_on"]["n_images"] == 9  # the training split
    assert cal["fitted_on"]["nll_after"] <= cal["fitted_on"]["nll_before"] + 1e-9
    assert read_meta(run)["temperature"] == pytest.approx(cal["fitted_temperature"])
    assert wardrobe.Classifier.load(run).temperature == pytest.approx(cal["fitted_temperature"])
    saved = json.loads((out / "metrics.json").read_text())
    assert "robustness" in saved and saved["calibration"]["ece_after"] >= 0
    assert (out / "reliability.png").stat().st_size > 1000
    page = _parse(out / "report.html")
    assert set(SECTIONS) <= page.ids
    assert page.imgs >= 3 and not page.external  # confusion, histogram, reliability; self-contained
    text = (out / "report.html").read_text()
    assert "Not computed" not in text  # robustness and calibration were both computed


def test_report_gallery_shows_the_most_confident_mistakes(tmp_path, shapes_dir):
    from wardrobe.evaluation.report import confidently_wrong, write_report
    from wardrobe.metrics import compute_metrics

    assert confidently_wrong(Y, P) == [2, 4, 5]  # all wrong at 0.5: ties keep their order
    probs = P.copy()
    probs[5] = [0.05, 0.9, 0.05]
    assert confidently_wrong(Y, probs)[0] == 5
    paths = sorted(shapes_dir.rglob("*.jpg"))[:6]
    path = write_report(tmp_path / "r.html", "t", compute_metrics(Y, probs, ["a", "b", "c"]), Y, probs, paths)
    page = _parse(path)
    text = path.read_text()
    assert page.ids >= {"robustness", "calibration", "confidently-wrong", "training-curves"}
    assert "predicted:</b> b (0.900)" in text and text.count('class="thumb"') == 3


def test_cv_command_end_to_end(shapes_dir, tmp_path):
    from wardrobe.cli import app
    from wardrobe.evaluation.report import SECTIONS

    out = tmp_path / "cv"
    r = runner.invoke(app, ["cv", str(shapes_dir), "--folds", "3", "--out", str(out), "--workers", "0",
                            "--seed", "1"])
    assert r.exit_code == 0, r.output
    assert "mean ± std" in r.output
    res = json.loads((out / "cv.json").read_text())
    assert res["folds"] == 3 and len(res["fold_metrics"]) == 3
    assert sum(f["n_validation"] for f in res["fold_metrics"]) == 36
    for k in (1, 2, 3):
        for name in ("model.safetensors", "metrics.json", "confusion_matrix.csv", "confusion_matrix.png"):
            assert (out / f"fold-{k}" / name).is_file()
        fold = json.loads((out / f"fold-{k}" / "metrics.json").read_text())
        assert fold["counts"] == {"train": 24, "validation": 12}  # the fold's split, not a ratio split
    agg = res["aggregate"]["accuracy"]
    assert agg["mean"] == pytest.approx(np.mean([f["accuracy"] for f in res["fold_metrics"]]))
    assert agg["mean"] >= 0.9  # the shapes are easy
    # out-of-fold predictions from the cached embeddings agree with each fold's own validation figure
    assert res["pooled_out_of_fold"]["accuracy"] == pytest.approx(agg["mean"], abs=1e-6)
    assert "out_of_fold" not in res  # probes choose no tau: nothing was regraded
    assert "mean ± std" in (out / "cv.md").read_text() and (out / "cv.csv").read_text().startswith("fold,")
    assert set(SECTIONS) | {"folds"} <= _parse(out / "report.html").ids
    from wardrobe.errors import WardrobeError
    from wardrobe.evaluation.cv import open_cv

    again_cv, labels, y, oof = open_cv(out)  # a finished CV reopened for study (bench/cv_*.py)
    assert again_cv["folds"] == 3 and len(labels) == 36 and oof.shape == (36, len(res["classes"]))
    assert (oof.argmax(1) == y).mean() == pytest.approx(res["pooled_out_of_fold"]["accuracy"])
    with pytest.raises(WardrobeError, match="not a finished cross-validation"):
        open_cv(tmp_path)
    # --resume: the finished folds are reused (not trained again), the figures stay
    stamps = [(out / f"fold-{k}" / "model.safetensors").stat().st_mtime_ns for k in (1, 2, 3)]
    again = runner.invoke(app, ["cv", str(shapes_dir), "--folds", "3", "--out", str(out), "--workers", "0",
                                "--seed", "1", "--resume"])
    assert again.exit_code == 0, again.output
    assert [(out / f"fold-{k}" / "model.safetensors").stat().st_mtime_ns for k in (1, 2, 3)] == stamps
    assert json.loads((out / "cv.json").read_text())["aggregate"] == res["aggregate"]
    bad = runner.invoke(app, ["cv", str(shapes_dir), "--out", str(tmp_path / "x"), "--no-such-option"])
    assert bad.exit_code != 0


def test_probe_noise_hardening_adds_noisy_training_embeddings(shapes_dir, tmp_path):
    import wardrobe

    run = wardrobe.train(shapes_dir, tmp_path / "hard", noise=0.1, val_ratio=0.25, workers=0, show_progress=False)
    assert run.config["noise"] == 0.1
    noisy = run.metrics["timings"]["embeddings"]["noisy"]
    assert noisy["n"] == run.metrics["counts"]["train"] == 27
    assert run.metrics["accuracy"] >= 0.9
    again = wardrobe.train(shapes_dir, tmp_path / "hard2", noise=0.1, val_ratio=0.25, workers=0, show_progress=False)
    assert again.metrics["timings"]["embeddings"]["noisy"]["cached"] == 27  # noisy embeddings are cached too


def test_compare_and_bench_commands(trained_run, shapes_dir, tmp_path):
    from wardrobe.cli import app

    out = tmp_path / "cmp"
    r = runner.invoke(app, ["compare", str(shapes_dir), "--models", "efficientnet_lite0,efficientnet_lite1",
                            "--out", str(out), "--workers", "0", "--val-ratio", "0.25"])
    assert r.exit_code == 0, r.output
    board = json.loads((out / "leaderboard.json").read_text())["leaderboard"]
    assert {b["model"] for b in board} == {"efficientnet_lite0", "efficientnet_lite1"}
    by = {b["model"]: b for b in board}
    assert 3.0 < by["efficientnet_lite0"]["params_m"] < by["efficientnet_lite1"]["params_m"] < 5.0
    assert 600 < by["efficientnet_lite0"]["mflops"] < by["efficientnet_lite1"]["mflops"]  # Lite0: ~0.4 GMACs
    assert all(b["latency_ms"] > 0 and b["train_seconds"] > 0 for b in board)
    assert (out / "leaderboard.md").read_text().count("| efficientnet_lite") == 2
    assert (out / "leaderboard.csv").read_text().splitlines()[0].startswith("model,accuracy,f1_macro")
    assert (out / "leaderboard.png").stat().st_size > 1000

    js = tmp_path / "speed.json"
    r = runner.invoke(app, ["bench", str(trained_run), "--runs", "5", "--batch-size", "4", "--output", str(js)])
    assert r.exit_code == 0, r.output
    s = json.loads(js.read_text())
    assert 0 < s["single"]["model_only_ms"]["p50"] <= s["single"]["model_only_ms"]["p95"]
    assert s["single"]["with_decoding_ms"]["p50"] > s["single"]["model_only_ms"]["p50"]
    assert s["batch"]["size"] == 4 and s["batch"]["with_decoding_photos_per_s"] > 0
    assert s["machine"]["cpu"] and s["machine"]["threads"]["torch_intra_op"] >= 1


def test_evaluate_command_prints_robustness_and_calibration(trained_run, shapes_dir, tmp_path):
    from wardrobe.cli import app

    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    r = runner.invoke(app, ["evaluate", str(run), str(shapes_dir), "--out", str(tmp_path / "e"), "--robustness",
                            "--calibrate", "--workers", "0"])
    assert r.exit_code == 0, r.output
    assert "gaussian_noise_0.1" in r.output and "ECE (15 bins)" in r.output
    assert (tmp_path / "e" / "report.html").is_file()


@pytest.mark.slow
@pytest.mark.skipif(real_data_root() is None, reason="WARDROBE_DATA_DIR has no clothing-dataset")
def test_probe_5fold_cv_on_clothing17(tmp_path):
    import wardrobe

    # One C instead of the grid keeps the five fits quick; the embeddings are extracted once.
    res = wardrobe.cross_validate("clothing-17", tmp_path, folds=5, cs=(0.1,), show_progress=False)
    assert len(res["fold_metrics"]) == 5 and len(res["classes"]) == 17
    for k in range(1, 6):
        assert (tmp_path / f"fold-{k}" / "metrics.json").is_file()
    agg = res["aggregate"]
    assert 0.75 <= agg["accuracy"]["mean"] <= 0.98 and agg["accuracy"]["std"] < 0.05
    assert agg["f1_macro"]["mean"] > 0.5 and agg["map_macro"]["mean"] > 0.6


def test_cv_regrades_a_logit_adjusted_fold_with_cross_fitted_taus(tmp_path):
    from wardrobe.evaluation.cv import graded_fold_probs
    from wardrobe.metrics import softmax
    from wardrobe.training.posthoc import TAUS_AFTER_BALANCED, adjustment, cross_fitted, taus_for

    rng = np.random.default_rng(0)
    y = np.array([0] * 60 + [1] * 30 + [2] * 10)
    z = rng.normal(0, 1, (100, 3)) + 2.0 * np.eye(3)[y]
    counts = np.array([600, 300, 100])
    shipped = softmax((z + adjustment(counts, 0.5)) / 0.5)  # what the fold model's Classifier returns
    shipped[3] = np.nan  # a photo that failed to decode stays out
    fold = tmp_path / "fold-1"
    fold.mkdir()
    same, graded = graded_fold_probs(shipped, fold, y, counts)
    assert not graded and same is shipped  # no run files: nothing was chosen on the fold
    (fold / "config.json").write_text(json.dumps({"logit_adjustment": {"tau": 0.5, "search": []}}))
    (fold / "metrics.json").write_text(json.dumps({"calibration": {"temperature": 0.5}}))
    out, graded = graded_fold_probs(shipped, fold, y, counts)
    ok = np.arange(100) != 3
    assert graded and np.isnan(out[3]).all()
    expect, _ = cross_fitted(softmax(z[ok]), y[ok], counts)
    assert np.allclose(out[ok], expect, atol=1e-6)
    # a fold trained with balanced softmax is regraded on its own grid (tau 0 to -1)
    (fold / "config.json").write_text(json.dumps({"logit_adjustment": {"tau": -0.5, "search": []},
                                                  "fit": {"loss": "balanced"}}))
    shipped = softmax((z + adjustment(counts, -0.5)) / 0.5)
    out, graded = graded_fold_probs(shipped, fold, y, counts)
    expect, halves = cross_fitted(softmax(z), y, counts, TAUS_AFTER_BALANCED)
    assert graded and np.allclose(out, expect, atol=1e-6) and all(t <= 0 for t in halves)
    # a fold trained with fourth-root sampling is regraded on a grid that starts at -0.25
    (fold / "config.json").write_text(json.dumps({"logit_adjustment": {"tau": -0.25, "search": []},
                                                  "fit": {"loss": "ce"}, "sampler": "root4"}))
    shipped = softmax((z + adjustment(counts, -0.25)) / 0.5)
    out, graded = graded_fold_probs(shipped, fold, y, counts)
    expect, _ = cross_fitted(softmax(z), y, counts, taus_for("ce", "root4"))
    assert graded and np.allclose(out, expect, atol=1e-6)
    assert not np.allclose(expect, cross_fitted(softmax(z), y, counts)[0], atol=1e-3)  # the grid mattered
