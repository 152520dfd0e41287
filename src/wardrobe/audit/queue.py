"""The audit's suspected label errors as a review queue: the same review.csv `wardrobe label` writes,
so `wardrobe review DIR` shows them and `train --corrections DIR/corrections.csv` applies the fixes.
Accepting keeps the photo's given label; key 2 takes the label the cross-validated probe suggests."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from wardrobe.errors import WardrobeError
from wardrobe.inference.labelling import REVIEW_COLUMNS


def write_review_queue(suspects: list[dict], classes: list[str], folder: Path) -> dict:
    review = folder / "review.csv"
    if review.exists():
        raise WardrobeError(f"{review} exists: a queue is never overwritten (its corrections.csv refers to it); "
                            "use another --queue folder")
    folder.mkdir(parents=True, exist_ok=True)
    with review.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(REVIEW_COLUMNS)
        for s in suspects:  # most likely mislabelled first (cleanlab's label quality)
            w.writerow([s["path"], s["label"], f"{s['prob_given']:.6f}", s["label"], s["suggested"],
                        f"{s['prob_suggested']:.6f}", "", "", "", "", ""])
    (folder / "summary.json").write_text(json.dumps({"source": "data audit", "classes": list(classes),
                                                     "suspects": len(suspects)}, indent=2))
    return {"folder": str(folder), "photos": len(suspects)}
