"""Top-1 agreement of each int8 export scheme with the fp32 export, on the 341 clothing-top10
validation photos, with file sizes.

Run: WARDROBE_DATA_DIR=../shared/data .venv/bin/python bench/int8_agreement.py runs/top10-probe [runs/best ...]
(train the probe first: `wardrobe train clothing-top10 --out runs/top10-probe`)
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import numpy as np

os.environ.setdefault("WARDROBE_QUIET", "1")

from wardrobe.data import load_dataset  # noqa: E402
from wardrobe.inference.classifier import Classifier  # noqa: E402
from wardrobe.inference.export import calibration_photos, export_model  # noqa: E402


def main(models: list[str]) -> None:
    paths = [r.path for r in load_dataset("clothing-top10").split("validation")]
    calib = calibration_photos("clothing-top10", 128)
    for model in models:
        with tempfile.TemporaryDirectory() as d:
            fp32 = export_model(model, Path(d) / "fp32.onnx")
            ref = Classifier.load(fp32).predict_proba(paths, show_progress=False)[0].argmax(1)
            print(f"{model}: fp32 {fp32.stat().st_size / 1e6:.1f} MB, {len(paths)} validation photos")
            for scheme in ("weights", "dynamic", "static"):
                out = export_model(model, Path(d) / f"{scheme}.onnx", int8=True, scheme=scheme,
                                   calibrate=calib if scheme == "static" else None)
                top1 = Classifier.load(out).predict_proba(paths, show_progress=False)[0].argmax(1)
                print(f"  int8 {scheme:8s} {out.stat().st_size / 1e6:5.1f} MB  top-1 agreement with fp32 "
                      f"{np.mean(top1 == ref):.4f}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:] or ["runs/top10-probe"])
