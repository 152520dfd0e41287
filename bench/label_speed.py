"""`wardrobe label` (accepted / review split, unknown detector) against `wardrobe predict` on the same
photos with the same model, taking turns (2 rounds each), JPEG decoding included.

Run: .venv/bin/python bench/label_speed.py RUN [--photos 960]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from wardrobe.data import load_dataset
from wardrobe.evaluation.speed import cpu_model
from wardrobe.inference.batch import label_photos
from wardrobe.inference.classifier import Classifier
from wardrobe.inference.labelling import label_catalogue


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("run")
    ap.add_argument("--photos", type=int, default=960)
    args = ap.parse_args()
    if not os.environ.get("WARDROBE_DATA_DIR") and Path("../shared/data").is_dir():
        os.environ["WARDROBE_DATA_DIR"] = str(Path("../shared/data").resolve())
    print(f"machine: {os.cpu_count()} cores, {cpu_model()}")
    paths = [str(r.path) for r in load_dataset("clothing-17").records[: args.photos]]
    clf = Classifier.load(args.run)
    clf.predict_proba(paths[:64], show_progress=False)  # export and warm up once
    rates = {"predict": [], "label": []}
    for _ in range(2):
        with tempfile.TemporaryDirectory() as tmp:
            t = time.perf_counter()
            label_photos(clf, paths, Path(tmp) / "p.csv", show_progress=False)
            rates["predict"].append(len(paths) / (time.perf_counter() - t))
            t = time.perf_counter()
            label_catalogue(clf, paths, Path(tmp) / "labels", show_progress=False)
            rates["label"].append(len(paths) / (time.perf_counter() - t))
    p, lab = max(rates["predict"]), max(rates["label"])
    print(f"{len(paths)} photos, best of 2 rounds: predict {p:.1f} photos/s, label {lab:.1f} photos/s "
          f"({lab / p:.3f} of predict); rounds {rates}")


if __name__ == "__main__":
    main()
