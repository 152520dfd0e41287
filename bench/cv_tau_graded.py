"""How a finished cross-validation of a logit-adjusted recipe reads when the tau of each fold is not
chosen on the fold it is graded on. Until session 18 the best preset picked tau on its validation
split and reported that split's figures with it; in a CV the validation split is the graded fold,
so the figures read high. Training now grades validation with cross-fitted taus
(training/posthoc.py: cross_fitted); this script regrades an earlier CV the same way from its
out-of-fold probabilities, with no new inference, and prints fixed-tau rows beside it.

Each fold model's unadjusted scores are recovered from its out-of-fold probabilities
(training/posthoc.py: unadjusted_scores).

Run: .venv/bin/python bench/cv_tau_graded.py CV_DIR   (e.g. runs/cv17-best16, from `wardrobe cv` before session 18)
     .venv/bin/python bench/cv_tau_graded.py --run RUN   (one `wardrobe train` run: predicts its
     validation photos again, e.g. runs/best on clothing-top10)
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from wardrobe.data import load_dataset
from wardrobe.evaluation.cv import make_folds, open_cv
from wardrobe.metrics import compute_metrics, softmax
from wardrobe.training.posthoc import adjustment, cross_fitted, taus_for, unadjusted_scores


def graded(y: np.ndarray, probs: np.ndarray, classes: list[str]) -> tuple[float, float]:
    m = compute_metrics(y, probs, classes)
    return m["accuracy"], m["f1_macro"]


def regrade_run(run: Path) -> None:
    from wardrobe.inference import Classifier

    config = json.loads((run / "config.json").read_text())
    metrics = json.loads((run / "metrics.json").read_text())
    ds = load_dataset(config["data"])
    val, train = ds.split("validation"), ds.split("train")
    if len(val) != metrics["counts"]["validation"] or len(train) != metrics["counts"]["train"]:
        raise SystemExit(f"{run}: {config['data']} no longer splits as it did for this run")
    clf = Classifier.load(run)
    probs = clf.predict_proba([r.path for r in val])[0]
    y = np.array([ds.classes.index(r.label) for r in val])
    counts = np.bincount([ds.classes.index(r.label) for r in train], minlength=len(ds.classes))
    tau, taus = config["logit_adjustment"]["tau"], taus_for(config["fit"]["loss"])
    z = unadjusted_scores(probs, clf.temperature, counts, tau)
    for t in taus:
        acc, f1 = graded(y, softmax(z + adjustment(counts, t)), ds.classes)
        print(f"fixed tau {t}{' (chosen on these photos)' if t == tau else ''}: accuracy {acc:.4f}, macro-F1 {f1:.4f}")
    cf, halves = cross_fitted(softmax(z), y, counts, taus)
    acc, f1 = graded(y, cf, ds.classes)
    print(f"cross-fitted (halves chose {halves}): accuracy {acc:.4f}, macro-F1 {f1:.4f}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("cv_dir", type=Path, nargs="?")
    ap.add_argument("--run", type=Path)
    args = ap.parse_args()
    if args.run:
        return regrade_run(args.run)
    cv, labels, y, oof = open_cv(args.cv_dir)
    if "out_of_fold" in cv:
        raise SystemExit(f"{args.cv_dir}: its out-of-fold probabilities are already graded with cross-fitted taus")
    classes = cv["classes"]
    k = len(classes)
    rows = {"tau chosen on the graded fold": [], "cross-fitted tau (as training grades now)": []}
    for fold, (tr, va) in enumerate(make_folds(labels, cv["folds"], cv["seed"]), start=1):
        fold_dir = args.cv_dir / f"fold-{fold}"
        config = json.loads((fold_dir / "config.json").read_text())
        if "logit_adjustment" not in config:
            raise SystemExit(f"{fold_dir}: not logit-adjusted; nothing to regrade")
        temp = json.loads((fold_dir / "metrics.json").read_text())["calibration"]["temperature"]
        counts = np.bincount(y[tr], minlength=k)
        tau, taus = config["logit_adjustment"]["tau"], taus_for(config.get("fit", {}).get("loss", "ce"))
        z = unadjusted_scores(oof[va], temp, counts, tau)
        search = {s["tau"]: s["val_f1_macro"] for s in config["logit_adjustment"]["search"]}

        for t in taus:  # the grid the fold searched: balanced softmax searches 0 to -1
            rows.setdefault(f"fixed tau {t}", []).append(graded(y[va], softmax(z + adjustment(counts, t)), classes))
        chosen = max(taus, key=lambda t: (rows[f"fixed tau {t}"][-1][1], -abs(t)))
        rows["tau chosen on the graded fold"].append(rows[f"fixed tau {chosen}"][-1])
        cf, halves = cross_fitted(softmax(z), y[va], counts, taus)
        rows["cross-fitted tau (as training grades now)"].append(graded(y[va], cf, classes))
        check = abs(rows[f"fixed tau {tau}"][-1][1] - search[tau])
        print(f"fold {fold}: tau {tau} (recovered scores reproduce its search to {check:.4f}), halves chose {halves}; "
              f"cross-fitted accuracy {rows['cross-fitted tau (as training grades now)'][-1][0]:.4f}, "
              f"macro-F1 {rows['cross-fitted tau (as training grades now)'][-1][1]:.4f}")
    print(f"\n{cv['dataset']}, {len(rows['fixed tau 0.0'])} folds: mean accuracy, mean macro-F1")
    for name, vals in rows.items():
        a = np.array(vals)
        print(f"  {name:44s} {a[:, 0].mean():.4f}  {a[:, 1].mean():.4f}")


if __name__ == "__main__":
    main()
