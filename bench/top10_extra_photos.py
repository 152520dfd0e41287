"""Would more training photos help clothing-top10? images.csv holds photos of the top-10 classes that
the upstream top-10 subset left out (kids' clothes among them). This writes a copy of the dataset
folder whose top10-split.csv adds them to the train split, the validation split unchanged; any of
them that the audit's near-duplicate rule joins to a validation photo is left out. The photos
themselves are not copied: images/ is a link to the real folder.

Run: .venv/bin/python bench/top10_extra_photos.py OUT [--no-kids]
     then WARDROBE_DATA_DIR=OUT wardrobe train clothing-top10 --preset best ...
"""

from __future__ import annotations

import argparse
import csv
import os
from collections import Counter
from pathlib import Path

from wardrobe.data.fingerprints import split_leakage
from wardrobe.data.hashing import PHASH_THRESHOLD, THUMB_SIMILARITY
from wardrobe.data.presets import dataset_root
from wardrobe.data.sources import Record


def _rows(path: Path) -> list[dict]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out", type=Path, help="folder to write (it gets a clothing-dataset/ inside)")
    ap.add_argument("--no-kids", action="store_true", help="leave out the rows images.csv marks as kids' clothes")
    args = ap.parse_args()
    src = dataset_root()
    if (args.out / "clothing-dataset" / "top10-split.csv").exists():
        raise SystemExit(f"{args.out / 'clothing-dataset' / 'top10-split.csv'}: already there; choose another folder")
    full, top = (_rows(src / name) for name in ("images.csv", "top10-split.csv"))
    listed = {r["image"] for r in top}
    classes = {r["label"] for r in top}
    files = {p.stem for p in (src / "images").glob("*.jpg")}
    extra = [r for r in full if r["label"].lower() in classes and r["image"] not in listed and r["image"] in files]
    if args.no_kids:
        extra = [r for r in extra if r["kids"] == "False"]
    path = {r["image"]: src / "images" / f"{r['image']}.jpg" for r in top + extra}
    records = [Record(path[r["image"]], r["label"], "validation") for r in top if r["split"] == "validation"]
    records += [Record(path[r["image"]], r["label"].lower(), "train") for r in extra]
    # the audit's rule, looser than the train-time warning's: a doubtful pair costs one training photo
    leak = split_leakage(records, phash_threshold=PHASH_THRESHOLD, min_similarity=THUMB_SIMILARITY)
    near_val = {a for a, _ in leak["exact"] + leak["near"]}
    added = [r for r in extra if str(path[r["image"]]) not in near_val]
    root = args.out / "clothing-dataset"
    root.mkdir(parents=True, exist_ok=True)
    if not (root / "images").exists():
        os.symlink(src / "images", root / "images")
    rows = [{"image": r["image"], "label": r["label"], "split": r["split"]} for r in top]
    rows += [{"image": r["image"], "label": r["label"].lower(), "split": "train"} for r in added]
    with (root / "top10-split.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, ["image", "label", "split"])
        w.writeheader()
        w.writerows(rows)
    print(f"{len(extra)} photos of the top-10 classes outside the subset; {len(near_val)} near a validation "
          f"photo left out; {len(added)} added to the train split ({len(top)} rows before)")
    print(dict(Counter(r["label"].lower() for r in added).most_common()))
    print(f"written {root / 'top10-split.csv'}")


if __name__ == "__main__":
    main()
