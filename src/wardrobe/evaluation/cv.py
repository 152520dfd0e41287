"""k-fold cross-validation: stratified, seeded folds over every photo of DATA, each fold trained by
``wardrobe.train`` on its own train/validation assignment.

The caches make a probe CV cheap: embeddings are keyed by file content, so the first fold extracts
them and every later fold (and every later CV of the same data) only fits logistic regressions.
"""

from __future__ import annotations

import copy
import csv
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from rich.table import Table
from sklearn.model_selection import StratifiedKFold

from wardrobe.data import DataOptions, load_dataset
from wardrobe.data.cache import key_digest
from wardrobe.data.fingerprints import split_leakage
from wardrobe.errors import WardrobeError
from wardrobe.evaluation.calibration import calibration_summary, plot_reliability
from wardrobe.evaluation.plots import plot_confusion, write_confusion_csv
from wardrobe.evaluation.report import table, write_report
from wardrobe.files import is_secondary_process
from wardrobe.inference.classifier import Classifier
from wardrobe.metrics import compute_metrics, softmax
from wardrobe.models.heads import _classifier_path
from wardrobe.models.modelfile import load_model, resolve_model_path
from wardrobe.models.registry import Backbone
from wardrobe.training import train
from wardrobe.training.embeddings import extract_embeddings
from wardrobe.training.options import TrainOptions
from wardrobe.training.posthoc import cross_fitted, taus_for, unadjusted_scores
from wardrobe.training.runfolder import check_out, partial_dir
from wardrobe.transforms import Preprocess
from wardrobe.ui import info, warn

CV_KEYS = ("accuracy", "f1_macro", "f1_weighted", "map_macro")
KEY_NAMES = {"accuracy": "accuracy", "f1_macro": "macro-F1", "f1_weighted": "weighted-F1", "map_macro": "mAP"}


def make_folds(labels, folds: int = 5, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """[(train indices, validation indices)] per fold: each class spread evenly over the folds,
    every photo in exactly one validation fold."""
    labels = np.asarray(labels)
    if folds < 2:
        raise WardrobeError(f"--folds {folds}: needs at least 2 folds")
    values, counts = np.unique(labels, return_counts=True)
    small = [str(v) for v, n in zip(values, counts) if n < folds]
    if small:
        raise WardrobeError(f"class {', '.join(map(repr, small))} has fewer photos than --folds {folds} "
                            "(drop it with --exclude or --min-count, or use fewer folds)")
    skf = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    return [(tr, va) for tr, va in skf.split(np.zeros(len(labels)), labels)]


def aggregate(fold_metrics: list[dict], keys=CV_KEYS) -> dict:
    """Mean and standard deviation (population, ddof=0, as numpy and scikit-learn report it) of each
    metric over the folds."""
    out = {}
    for k in keys:
        vals = np.array([m[k] for m in fold_metrics], dtype=float)
        out[k] = {"mean": float(vals.mean()), "std": float(vals.std()), "folds": vals.tolist()}
    return out


def fold_probabilities(model_path: Path, paths: list, batch_size: int = 32, workers: int | None = None,
                       runtime: str = "auto", show_progress: bool = False) -> tuple[np.ndarray, dict]:
    """Out-of-fold probabilities of one fold's model. A probe model's backbone is the frozen one
    whose embeddings training cached (same name, weights and preprocessing, so the same cache key),
    so its head is applied to those embeddings instead of rerunning the network."""
    import torch  # heavy: torch, only on this path

    model, meta = load_model(model_path)
    if meta.get("mode") == "probe" and meta.get("backbone"):
        net = copy.deepcopy(model)
        net.reset_classifier(0)
        backbone = Backbone(meta["backbone"], meta["arch"], net.eval(), Preprocess.from_dict(meta["preprocess"]),
                            meta.get("weights", "random"))
        feats, errors, _ = extract_embeddings(paths, backbone, batch_size, workers, runtime,
                                              show_progress=show_progress)
        head = model.get_submodule(_classifier_path(model))
        good = np.array([i not in errors for i in range(len(paths))], dtype=bool)
        probs = np.full((len(paths), len(meta["classes"])), np.nan, dtype=np.float32)
        with torch.no_grad():
            logits = head(torch.from_numpy(np.nan_to_num(feats[good]))).double()
        probs[good] = softmax(logits.numpy(), float(meta.get("temperature", 1.0)))
        return probs, errors
    clf = Classifier.load(model_path, runtime=runtime)
    return clf.predict_proba(paths, batch_size, workers, show_progress, "out-of-fold")


def graded_fold_probs(probs: np.ndarray, fold_dir: Path, y_val: np.ndarray, train_counts: np.ndarray,
                      paths: list | None = None) -> tuple[np.ndarray, bool]:
    """A fold model was chosen on its validation fold (its best epoch, its tau), and the pooled
    out-of-fold figures must not be graded with those choices. A network fold saved the
    probabilities its own figures were graded with, each half of the fold with the epoch and tau
    the other half chose (validation_graded.npz, training/finetune.py): those are used. An older
    fold gets cross-fitted taus on its kept model's probabilities. Returns (probabilities, whether
    they were regraded)."""
    ok = ~np.isnan(probs).any(1)
    saved = _saved_grading(fold_dir, paths, ok)
    if saved is not None:
        out = probs.copy()
        out[ok] = saved
        return out, True
    try:
        config = json.loads((fold_dir / "config.json").read_text())
        tau, loss = config["logit_adjustment"]["tau"], config.get("fit", {}).get("loss", "ce")
        sampler = config.get("sampler", "none")
        temp = float(json.loads((fold_dir / "metrics.json").read_text())["calibration"]["temperature"])
    except (OSError, ValueError, KeyError, TypeError):
        return probs, False  # not logit-adjusted (or no calibration): nothing was chosen on this fold
    out = probs.copy()
    z = unadjusted_scores(probs[ok], temp, train_counts, tau)
    out[ok] = cross_fitted(softmax(z), y_val[ok], train_counts, taus_for(loss, sampler))[0]
    return out, True


def _saved_grading(fold_dir: Path, paths: list | None, ok: np.ndarray) -> np.ndarray | None:
    """The fold run's graded validation probabilities for the photos ``paths[ok]``, or None when it
    saved none or they do not cover them all (plain arrays: nothing is unpickled)."""
    if paths is None:
        return None
    try:
        with np.load(fold_dir / "validation_graded.npz", allow_pickle=False) as f:
            rows = {p: i for i, p in enumerate(f["paths"].tolist())}
            graded = f["probs"]
    except (OSError, ValueError, KeyError):
        return None
    want = [str(p) for p, good in zip(paths, ok) if good]
    if any(p not in rows for p in want):
        return None
    return graded[[rows[p] for p in want]]


def _warn_fold_leakage(records, splits, workers, show_progress) -> None:
    """One line for the whole CV: duplicates whose twins land in another fold inflate every fold."""
    exact = near = 0
    for _, va in splits:
        fold_va = set(va.tolist())
        fold = [replace(r, split="validation" if i in fold_va else "train") for i, r in enumerate(records)]
        rep = split_leakage(fold, workers, show_progress and not exact and not near)
        exact += rep["eval_photos_with_exact_twin_in_train"]
        near += rep["eval_photos_with_near_twin_in_train"]
    if exact or near:
        warn(f"duplicates cross the folds: {exact} validation photos (all folds together) have an identical photo "
             f"in their fold's train split, {near} more a near duplicate; metrics will read high - run "
             "'wardrobe data audit' to see them")


FOLD_MARKER = "cv_fold.json"


def _fold_fingerprint(data, folds: int, seed: int, k: int, train_paths: list, val_paths: list,
                      train_options: dict, data_options) -> str:
    """What makes a fold's run the one this CV would train: same data, options and photos."""
    return key_digest({"data": str(data), "folds": folds, "seed": seed, "fold": k,
                       "train": sorted(map(str, train_paths)), "validation": sorted(map(str, val_paths)),
                       # callbacks are hooks of this process, not options of the recipe
                       "options": {name: repr(v) for name, v in sorted(train_options.items()) if name != "extra_callbacks"},
                       "data_options": repr(data_options)})


def _fold_state(fold_dir: Path, fingerprint: str) -> str:
    """'done' (reuse the fold), 'started' (continue it from its last checkpoint) or 'new'."""
    try:
        marker = json.loads((fold_dir / FOLD_MARKER).read_text())
    except (OSError, ValueError):
        return "new"
    if marker.get("fingerprint") != fingerprint:
        return "new"
    if marker.get("state") == "done" and (fold_dir / "metrics.json").is_file():
        return "done"
    if (partial_dir(fold_dir) / "checkpoints" / "last.ckpt").is_file():
        return "started"
    return "new"


def cross_validate(data: str | Path, out: str | Path, folds: int = 5, seed: int = 0,
                   data_options: DataOptions | None = None, batch_size: int | None = None, workers: int | None = None,
                   runtime: str = "auto", show_progress: bool = True, report: bool = True, resume: bool = False,
                   overwrite: bool = False, options: TrainOptions | None = None, **train_options) -> dict:
    """Train one model per fold (any ``wardrobe.train`` option) and write OUT/fold-K/ (model file,
    metrics.json, confusion matrix), OUT/cv.json, cv.csv, cv.md and report.html.

    The folds ignore any split column of DATA: every photo is validated on exactly once.
    ``resume``: folds an earlier run of the same CV finished are reused, and a fine-tuning fold it
    left half done continues from its last checkpoint (a CV of the best recipe takes hours).
    ``overwrite``: replace an earlier CV in OUT (otherwise refused). ``options``: the training
    options (TrainOptions) every fold trains with; keyword options are laid over them."""

    t0 = time.perf_counter()
    out = Path(out)
    if not is_secondary_process():
        check_out(out, overwrite, resume, what="a cross-validation")
    opts = data_options or DataOptions()
    ds = load_dataset(data, DataOptions(**opts.to_dict()))
    if any(r.split == "test" for r in ds.records):
        warn(f"{ds.name}: its split column is ignored; test photos take part in the folds too")
    labels = [r.label for r in ds.records]
    classes = ds.classes
    splits = make_folds(labels, folds, seed)
    paths = [str(r.path) for r in ds.records]
    index = {c: i for i, c in enumerate(classes)}
    y = np.array([index[c] for c in labels])
    oof = np.full((len(paths), len(classes)), np.nan, dtype=np.float32)
    fold_rows, regraded = [], False
    info(f"{ds.name}: {len(paths)} photos, {len(classes)} classes, {folds} stratified folds (seed {seed})")
    _warn_fold_leakage(ds.records, splits, workers, show_progress)
    for k, (tr, va) in enumerate(splits, start=1):
        fold_dir = out / f"fold-{k}"
        assignment = {paths[i]: "train" for i in tr} | {paths[i]: "validation" for i in va}
        fingerprint = _fold_fingerprint(data, folds, seed, k, [paths[i] for i in tr], [paths[i] for i in va],
                                        {"batch_size": batch_size, **train_options,
                                         **({"options": options.to_dict()} if options else {})}, opts)
        state = _fold_state(fold_dir, fingerprint) if resume else "new"
        m, model_path = _fold_run(data, fold_dir, state, fingerprint, f"{k}/{folds}", len(tr), len(va),
                                  dict(data_options=DataOptions(**opts.to_dict()), seed=seed, batch_size=batch_size,
                                       workers=workers, runtime=runtime, show_progress=show_progress,
                                       splits=assignment, options=options, **train_options))
        if not m:  # a non-zero rank of a multi-process run
            return {}
        if m["classes"] != classes:
            raise WardrobeError(f"fold {k}: trained on classes {m['classes']}, expected {classes}")
        probs, errors = fold_probabilities(model_path, [paths[i] for i in va], batch_size or 32, workers, runtime)
        probs, graded = graded_fold_probs(probs, fold_dir, y[va], np.bincount(y[tr], minlength=len(classes)),
                                          [paths[i] for i in va])
        regraded |= graded
        if graded:  # the fold's figures as the pooled ones: tau never chosen on the photos graded
            good = ~np.isnan(probs).any(1)
            m = {**m, **compute_metrics(y[va][good], probs[good], classes)}
        cm = np.array(m["confusion_matrix"])
        write_confusion_csv(cm, m["classes"], fold_dir / "confusion_matrix.csv")
        plot_confusion(cm, m["classes"], fold_dir / "confusion_matrix.png", title=f"fold {k}")
        oof[va] = probs
        fold_rows.append({"fold": k, "n_train": len(tr), "n_validation": len(va),
                          **{key: m[key] for key in CV_KEYS}, "top3_accuracy": m.get("top3_accuracy"),
                          "seconds": (m.get("timings") or {}).get("total_seconds")})
    agg = aggregate(fold_rows)
    ok = ~np.isnan(oof).any(1)
    pooled = compute_metrics(y[ok], oof[ok], classes)
    result = {"data": str(data), "dataset": ds.name, "folds": folds, "seed": seed, "n_images": len(paths),
              "classes": classes, "train_options": {k: str(v) for k, v in train_options.items()},
              "aggregate": agg, "fold_metrics": fold_rows,
              **({"out_of_fold": "graded with cross-fitted taus"} if regraded else {}),
              "pooled_out_of_fold": {k: v for k, v in pooled.items() if k != "per_class"} | {"per_class": pooled["per_class"]},
              "seconds": round(time.perf_counter() - t0, 2)}
    out.mkdir(parents=True, exist_ok=True)
    (out / "cv.json").write_text(json.dumps(result, indent=2))
    _write_tables(out, fold_rows, agg)
    np.save(out / "out_of_fold_probs.npy", oof)
    if report:
        _write_cv_report(out, ds, paths, folds, fold_rows, agg, pooled, oof[ok], y[ok], ok)
    info(f"wrote {out / 'cv.json'}, cv.csv, cv.md" + (", report.html" if report else ""))
    return result


def _fold_run(data, fold_dir: Path, state: str, fingerprint: str, which: str, n_train: int, n_val: int,
              train_kwargs: dict) -> tuple[dict, Path | None]:
    """One fold's (metrics, model path): reused when an earlier run finished it, else trained
    (continued from its checkpoint when ``state`` is "started")."""
    if state == "done":
        info(f"fold {which}: finished by an earlier run, reused ({fold_dir})")
        return json.loads((fold_dir / "metrics.json").read_text()), resolve_model_path(fold_dir)
    info(f"fold {which}: train {n_train}, validation {n_val}"
         + (" - continuing from its last checkpoint" if state == "started" else ""))
    fold_dir.mkdir(parents=True, exist_ok=True)
    (fold_dir / FOLD_MARKER).write_text(json.dumps({"state": "started", "fingerprint": fingerprint}))
    result = train(data, fold_dir, warn_leakage=False, resume=state == "started", overwrite=True, **train_kwargs)
    if result.metrics:
        (fold_dir / FOLD_MARKER).write_text(json.dumps({"state": "done", "fingerprint": fingerprint}))
    return result.metrics, result.model_path


def _write_cv_report(out: Path, ds, paths: list[str], folds: int, fold_rows: list[dict], agg: dict, pooled: dict,
                     probs: np.ndarray, y: np.ndarray, ok: np.ndarray) -> None:
    """report.html of a CV: its per-class table, confusion matrix, calibration and gallery pool the
    out-of-fold predictions."""
    summary_rows = [[KEY_NAMES[k], f"{agg[k]['mean']:.4f} ± {agg[k]['std']:.4f}"] for k in CV_KEYS]
    folds_html = table(["fold", "train", "validation", *(KEY_NAMES[k] for k in CV_KEYS), "seconds"],
                       [[r["fold"], r["n_train"], r["n_validation"], *(r[k] for k in CV_KEYS), r["seconds"]]
                        for r in fold_rows])
    note = ('<p class="note">Per-class table, confusion matrix, calibration and gallery below pool the '
            'out-of-fold predictions: every photo predicted by the model that did not train on it.</p>')
    plot_reliability(probs, y, out / "reliability.png", title=f"{ds.name} out-of-fold")
    write_report(out / "report.html", f"{folds}-fold cross-validation on {ds.name}", pooled, y, probs,
                 [p for p, g in zip(paths, ok) if g], class_counts=dict(sorted(ds.class_counts().items())),
                 run_dir=out / "fold-1", calibration=calibration_summary(probs, y),
                 reliability_png=out / "reliability.png", extra=[("folds", "Folds", note + folds_html)],
                 summary_rows=[[f"{r[0]} (mean ± std over folds)", r[1]] for r in summary_rows]
                 + [["pooled out-of-fold accuracy", pooled["accuracy"]], ["photos", len(paths)]])


def _write_tables(out: Path, rows: list[dict], agg: dict) -> None:
    cols = ["fold", "n_train", "n_validation", *CV_KEYS, "seconds"]
    with (out / "cv.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(cols)
        for r in rows:
            w.writerow([r[c] for c in cols])
        w.writerow(["mean", "", "", *(f"{agg[k]['mean']:.4f}" for k in CV_KEYS), ""])
        w.writerow(["std", "", "", *(f"{agg[k]['std']:.4f}" for k in CV_KEYS), ""])
    lines = ["| fold | " + " | ".join(KEY_NAMES[k] for k in CV_KEYS) + " |",
             "| --- |" + " --- |" * len(CV_KEYS)]
    lines += [f"| {r['fold']} | " + " | ".join(f"{r[k]:.4f}" for k in CV_KEYS) + " |" for r in rows]
    lines.append("| mean ± std | " + " | ".join(f"{agg[k]['mean']:.4f} ± {agg[k]['std']:.4f}" for k in CV_KEYS) + " |")
    (out / "cv.md").write_text("\n".join(lines) + "\n")


def open_cv(cv_dir: str | Path) -> tuple[dict, list[str], np.ndarray, np.ndarray]:
    """A finished CV, to study again: (cv.json, its photos' labels, their class indices, the
    out-of-fold probabilities), with its data checked unchanged (``make_folds(labels, cv["folds"],
    cv["seed"])`` gives its folds back)."""
    cv_dir = Path(cv_dir)
    try:
        cv = json.loads((cv_dir / "cv.json").read_text())
        oof = np.load(cv_dir / "out_of_fold_probs.npy")
    except (OSError, ValueError) as e:
        raise WardrobeError(f"{cv_dir}: not a finished cross-validation ({e})") from None
    ds = load_dataset(cv["data"])
    labels = [r.label for r in ds.records]
    if ds.classes != cv["classes"] or len(labels) != cv["n_images"]:
        raise WardrobeError(f"{cv_dir}: its data no longer matches {cv['data']}")
    return cv, labels, np.array([ds.classes.index(c) for c in labels]), oof


def open_cv_photos(cv_dir: str | Path) -> tuple[dict, np.ndarray, np.ndarray, list, list]:
    """``open_cv`` for studies that score the photos again with the fold models (``fold-K``):
    (cv.json, class indices, out-of-fold probabilities, the photos' paths, the folds)."""
    cv, labels, y, oof = open_cv(cv_dir)
    paths = [r.path for r in load_dataset(cv["data"]).records]
    return cv, y, oof, paths, make_folds(labels, cv["folds"], cv["seed"])


def cv_table(result: dict):
    """A Rich table of the folds and the mean ± std."""

    t = Table(title=f"{result['folds']}-fold cross-validation on {result['dataset']} ({result['n_images']} photos)")
    t.add_column("fold")
    for k in CV_KEYS:
        t.add_column(KEY_NAMES[k], justify="right")
    for r in result["fold_metrics"]:
        t.add_row(str(r["fold"]), *(f"{r[k]:.4f}" for k in CV_KEYS))
    t.add_section()
    agg = result["aggregate"]
    t.add_row("mean ± std", *(f"{agg[k]['mean']:.4f} ± {agg[k]['std']:.4f}" for k in CV_KEYS))
    return t
