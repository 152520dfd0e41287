"""``wardrobe.evaluate``: a model file against labelled photos, into metrics.json and figures."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import numpy as np

from wardrobe.data import DataOptions, assign_splits, load_dataset
from wardrobe.data.sources import Dataset
from wardrobe.errors import WardrobeError
from wardrobe.evaluation.calibration import (
    calibration_summary,
    expected_calibration_error,
    plot_reliability,
    reliability_bins,
    store_temperature,
)
from wardrobe.evaluation.plots import plot_confusion, write_confusion_csv
from wardrobe.evaluation.report import img_tag, table, write_report
from wardrobe.evaluation.robustness import robustness as robustness_test
from wardrobe.evaluation.trusted import plot_coverage_precision, trusted_html, trusted_summary
from wardrobe.inference.classifier import Classifier
from wardrobe.inference.explain import Explainer
from wardrobe.inference.predict import expand_paths
from wardrobe.metrics import compute_metrics, fit_temperature, nll, softmax
from wardrobe.models.modelfile import resolve_model_path, update_meta
from wardrobe.selection import fitted_selection
from wardrobe.ui import info, warn
from wardrobe.unknown import unknown_rates


def _norm(label: str) -> str:
    return re.sub(r"[\s_\-]+", "", label.casefold())


def match_labels(data_labels: list[str], classes: list[str]) -> dict[str, str]:
    """Map each data label onto a model class: exactly, else ignoring case, spaces, '-' and '_'
    ("T-Shirt" and "t-shirt" are one class). Labels with no match are an error naming them."""
    by_norm: dict[str, list[str]] = {}
    for c in classes:
        by_norm.setdefault(_norm(c), []).append(c)
    mapping, unknown = {}, []
    for label in data_labels:
        if label in classes:
            mapping[label] = label
        elif len(by_norm.get(_norm(label), [])) == 1:
            mapping[label] = by_norm[_norm(label)][0]
        else:
            unknown.append(label)
    if unknown:
        raise WardrobeError(f"labels unknown to the model: {', '.join(sorted(unknown))} "
                            f"(model classes: {', '.join(classes)}); drop them with --exclude or map them with --rename")
    return mapping


def _training_split(clf: Classifier) -> dict | None:
    """The split ratios and seed the model's training recorded, or None."""
    split_cfg = ((clf.meta.get("train_config") or {}).get("dataset") or {}).get("split")
    return split_cfg if isinstance(split_cfg, dict) else None


def _resplit(ds: Dataset, split_cfg: dict) -> Dataset:
    """DATA without a split column, split as the model's training split it (same ratios, same seed)."""
    return assign_splits(ds, split_cfg.get("val_ratio", 0.15), split_cfg.get("test_ratio", 0.0),
                         split_cfg.get("seed", 0))


def _own_split(ds: Dataset, clf: Classifier, split: str | None, data) -> Dataset:
    """DATA without a split column, and the model was trained on the same DATA: redo the model's
    stratified split, so a plain evaluate scores the photos it held out instead of every photo,
    training photos included."""
    split_cfg = _training_split(clf)
    if ds.has_splits or split == "all" or split_cfg is None:
        return ds
    if str((clf.meta.get("train_config") or {}).get("data")) != str(data):
        return ds
    if not split_cfg.get("val_ratio") and not split_cfg.get("test_ratio"):
        return ds  # it trained on every photo (--val-ratio 0): nothing was held out
    info(f"{ds.name}: evaluating the model's own {split or 'validation'} split (its ratios and seed); "
         "--split all scores every photo")
    return _resplit(ds, split_cfg)


def pick_split(ds: Dataset, split: str | None) -> tuple[str, list]:
    if split == "all" or (split is None and not ds.has_splits):
        return "all", ds.records
    if split is None:
        split = "test" if ds.split("test") else "validation"
    recs = ds.split(split)
    if not recs:
        raise WardrobeError(f"{ds.name}: the {split} split is empty (use --split all to evaluate every photo)")
    return split, recs


def evaluate(model: str | Path | Classifier, data: str | Path, out: str | Path | None = None,
             split: str | None = None, data_options: DataOptions | None = None, batch_size: int = 32,
             workers: int | None = None, runtime: str = "auto", show_progress: bool = True, tta: bool = False,
             robustness: bool = False, calibrate: bool = False, report: bool = True, seed: int = 0,
             unknown: str | Path | None = None, **data_overrides) -> dict:
    """Metrics of a model on DATA's ``split``; with ``out``: metrics.json, confusion matrix CSV/PNG,
    reliability diagram and report.html. ``robustness``: the same photos under each corruption of
    wardrobe.evaluation.robustness. ``calibrate``: fit a temperature on DATA's validation split and
    store it in the model file (the metrics are then those of the calibrated model). ``unknown``: a
    folder of photos of none of the model's classes: how well the unknown detector tells them from
    the evaluated photos (AUROC, share detected, share of known photos called unknown)."""
    t0 = time.perf_counter()
    clf = model if isinstance(model, Classifier) else Classifier.load(model, runtime=runtime, tta=tta)
    if unknown is not None and clf.unknown is None:
        raise WardrobeError(f"{model}: this model has no unknown-photo detector (trained before it existed, "
                            "without a validation split, or an exported ONNX file); retrain it")
    opts = data_options or DataOptions()
    ds = load_dataset(data, opts, **data_overrides)
    ds = _own_split(ds, clf, split, data)
    split, recs = pick_split(ds, split)
    mapping = match_labels(sorted({r.label for r in recs}), clf.classes)
    index = {c: i for i, c in enumerate(clf.classes)}
    probs, known_scores, errors = clf.predict_scores([r.path for r in recs], batch_size, workers, show_progress,
                                                     "evaluate", unknown=unknown is not None)
    for i, reason in sorted(errors.items()):
        ds.skipped.add(recs[i].path, reason)
    if len(ds.skipped):
        warn(ds.skipped.summary())
    ok = np.array([i not in errors for i in range(len(recs))], dtype=bool)
    if not ok.any():
        raise WardrobeError(f"{ds.name}: none of the {len(recs)} photos could be read")
    y = np.array([index[mapping[r.label]] for r in recs])[ok]
    probs = probs[ok]
    ok_recs = [r for r, good in zip(recs, ok) if good]
    calibration = calibration_summary(probs, y)
    calibration["temperature"] = clf.temperature
    probs_before = probs
    if calibrate:
        probs = _calibrate(clf, model, ds, split, probs, y, mapping, index, batch_size, workers, show_progress,
                           calibration)
    metrics = compute_metrics(y, probs, clf.classes)
    trusted = trusted_summary(probs, y, clf.classes, clf.meta.get("selection"), clf.temperature)
    unknown_result = _unknown(clf, unknown, known_scores[ok], batch_size, workers, show_progress) if unknown else None
    rob = None
    if robustness:
        rob = robustness_test(clf, [r.path for r in ok_recs], y, batch_size=batch_size, workers=workers, seed=seed,
                              show_progress=show_progress)
    seconds = time.perf_counter() - t0
    result = {"model": str(model if not isinstance(model, Classifier) else "<in memory>"), "data": str(data),
              "split": split, "tta": clf.tta, **metrics,
              "calibration": {k: v for k, v in calibration.items() if not k.startswith("reliability")},
              "trusted_labels": trusted, **({"unknown": unknown_result} if unknown_result else {}),
              **({"robustness": rob} if rob else {}),
              "seconds": round(seconds, 2), "skipped": ds.skipped.to_dict()}
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "metrics.json").write_text(json.dumps(result, indent=2))
        written = _write_figures(out, clf, ds, split, metrics, y, probs, probs_before if calibrate else None,
                                 trusted)
        if report:
            _write_report(out, model, ds, split, mapping, metrics, y, probs, ok_recs, rob, calibration, trusted)
            written += ", report.html"
        info(f"wrote {out / 'metrics.json'}, {written}")
    return result


def _write_figures(out: Path, clf, ds, split, metrics, y, probs, before, trusted) -> str:
    cm = np.array(metrics["confusion_matrix"])
    write_confusion_csv(cm, clf.classes, out / "confusion_matrix.csv")
    norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    np.savetxt(out / "confusion_matrix_normalized.csv", norm, delimiter=",", fmt="%.4f",
               header=",".join(clf.classes), comments="")
    title = f"{ds.name} ({split})"
    plot_confusion(cm, clf.classes, out / "confusion_matrix.png", title=title)
    # the reliability diagram shows the photos before and, when calibrated, after the new temperature
    plot_reliability(before if before is not None else probs, y, out / "reliability.png", title=title,
                     after=probs if before is not None else None)
    plot_coverage_precision(probs, y, out / "coverage_precision.png", trusted, title=title)
    return "confusion_matrix.csv/.png, reliability.png, coverage_precision.png"


def _write_report(out: Path, model, ds, split, mapping, metrics, y, probs, ok_recs, rob, calibration, trusted):
    counts: dict[str, int] = {}
    for r in ds.records:
        if r.label in mapping:
            counts[mapping[r.label]] = counts.get(mapping[r.label], 0) + 1
    run_dir = None if isinstance(model, Classifier) else resolve_model_path(model).parent
    write_report(out / "report.html", f"{Path(str(model)).name} on {ds.name} ({split})", metrics, y, probs,
                 [r.path for r in ok_recs], class_counts=dict(sorted(counts.items())), run_dir=run_dir,
                 robustness=rob, calibration=calibration, reliability_png=out / "reliability.png",
                 extra=[("trusted-labels", "Trusted labels: coverage and precision",
                         trusted_html(trusted, out / "coverage_precision.png", img_tag, table))],
                 explain=_explainer(model))


def _explainer(model):
    """Grad-CAM overlays for the report's gallery, when the model's network is at hand (not an ONNX
    export, not an in-memory Classifier)."""
    if isinstance(model, Classifier) or str(model).lower().endswith(".onnx"):
        return None
    try:
        return Explainer.load(model).overlay_png
    except (WardrobeError, ImportError) as exc:
        warn(f"no Grad-CAM overlays in the report ({exc})")
        return None


def _unknown(clf: Classifier, folder, known_scores: np.ndarray, batch_size, workers, show_progress) -> dict:
    paths = [str(p) for p in expand_paths([folder])]
    if not paths:
        raise WardrobeError(f"{folder}: no photos for --unknown")
    _, scores, errors = clf.predict_scores(paths, batch_size, workers, show_progress, "unknown")
    good = np.array([i not in errors for i in range(len(paths))], dtype=bool)
    result = unknown_rates(known_scores, scores[good], clf.unknown["threshold"])
    info(f"unknown photos ({int(good.sum())} in {folder}): AUROC {result['auroc']:.4f}, "
         f"{result['detected']:.1%} called unknown; {result['false_unknown']:.1%} of the evaluated known photos too")
    return {**result, "folder": str(folder), "score": clf.unknown["score"],
            "false_unknown_target": clf.unknown.get("false_unknown_target")}


def _calibrate(clf, model, ds, split, probs, y, mapping, index, batch_size, workers, show_progress,
               calibration: dict) -> np.ndarray:
    """Fit a temperature on the validation split, store it in the model file, and return the
    evaluated photos' probabilities under it. ``calibration`` gains the before/after figures."""
    t_old = clf.temperature
    # T_old * log p equals the raw logits up to a per-photo constant, which softmax ignores.
    as_logits = lambda p: t_old * np.log(np.clip(p.astype(np.float64), 1e-30, None))  # noqa: E731
    if split == "validation":
        val_logits, val_y = as_logits(probs), y
    else:
        val = ds.split("validation")
        split_cfg = _training_split(clf)
        if not ds.has_splits and split_cfg is not None:
            val = _resplit(ds, split_cfg).split("validation")
        if not val:
            raise WardrobeError(f"{ds.name}: --calibrate needs a validation split to fit the temperature on")
        vp, verr = clf.predict_proba([r.path for r in val], batch_size, workers, show_progress, "calibrate")
        keep = np.array([i not in verr for i in range(len(val))], dtype=bool)
        unknown = sorted({r.label for r in val} - set(mapping))
        if unknown:
            raise WardrobeError(f"{ds.name}: validation labels unknown to the model: {', '.join(unknown)}")
        val_logits = as_logits(vp[keep])
        val_y = np.array([index[mapping[r.label]] for r in val])[keep]
    t_new = fit_temperature(val_logits, val_y)
    fitted_on = {"data": ds.name, "split": "validation", "n_images": int(len(val_y)),
                 "nll_before": nll(val_logits, val_y), "nll_after": nll(val_logits, val_y, t_new)}
    # The trusted-label thresholds follow the temperature: refitted on the same validation photos.
    selection = fitted_selection(softmax(val_logits, t_new), val_y, clf.classes, t_new)
    clf.meta["selection"] = selection
    if isinstance(model, Classifier):
        warn("--calibrate on an in-memory model: the temperature is set on it but not saved to a file")
    else:
        store_temperature(model, t_new, fitted_on)
        update_meta(model, {"selection": selection})
        info(f"temperature {t_new:.3f} (was {t_old:.3f}) and trusted-label thresholds stored in "
             f"{resolve_model_path(model)}")
    clf.temperature = t_new
    new = softmax(as_logits(probs), t_new)
    calibration.update({"fitted_temperature": t_new, "temperature": t_new, "fitted_on": fitted_on,
                        "ece_before": calibration["ece"], "ece_after": expected_calibration_error(new, y),
                        "reliability_after": reliability_bins(new, y)})
    if split == "validation":
        warn("the temperature was fitted on the photos being evaluated: ECE after scaling is optimistic")
    return new.astype(np.float32)
