"""How much choosing the epoch on the reported photos adds to a CV's figures. Each network fold
records (config.json, "validation_figures") its figures graded with the epoch and tau each half of
the fold chose on the other half, and the older grading: the kept epoch (chosen on the whole fold),
only its tau cross-fitted. Prints both per fold and their means. A CV still under way (no cv.json
yet) is read from the folds it finished (their metrics.json).

Run: .venv/bin/python bench/cv_epoch_grading.py CV_DIR   (e.g. runs/cv17-mix)
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("cv_dir", type=Path)
    args = ap.parse_args()
    if (args.cv_dir / "cv.json").is_file():
        fold_metrics = json.loads((args.cv_dir / "cv.json").read_text())["fold_metrics"]
    else:
        done = sorted(p for p in args.cv_dir.glob("fold-*") if (p / "metrics.json").is_file())
        fold_metrics = [{"fold": int(p.name.split("-")[1]), **json.loads((p / "metrics.json").read_text())}
                        for p in done]
        print(f"{args.cv_dir}: no cv.json yet, {len(done)} finished folds")
    rows = []
    for m in fold_metrics:
        config = json.loads((args.cv_dir / f"fold-{m['fold']}" / "config.json").read_text())
        v = config.get("validation_figures")
        if v is None:
            raise SystemExit(f"{args.cv_dir}: fold {m['fold']} predates per-epoch grading")
        kept = v["kept_epoch"]
        rows.append((m["accuracy"], m["f1_macro"], kept["accuracy"], kept["f1_macro"]))
        epochs = ", ".join(f"epoch {h['epoch']} tau {h['tau']}" for h in v["halves"])
        print(f"fold {m['fold']}: cross-fitted epoch and tau {m['accuracy']:.4f} / {m['f1_macro']:.4f} ({epochs}); "
              f"kept epoch {kept['accuracy']:.4f} / {kept['f1_macro']:.4f}")
    r = np.array(rows)
    print(f"mean: cross-fitted {r[:, 0].mean():.4f} ± {r[:, 0].std():.4f} / {r[:, 1].mean():.4f} ± {r[:, 1].std():.4f}; "
          f"kept epoch {r[:, 2].mean():.4f} ± {r[:, 2].std():.4f} / {r[:, 3].mean():.4f} ± {r[:, 3].std():.4f}")


if __name__ == "__main__":
    main()
