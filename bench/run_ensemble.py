"""Do trained runs make different mistakes? Scores each run on a dataset's validation photos, then
every subset of two or more runs by averaging their probabilities, and counts the photos every run
gets wrong (what no average of them can fix); with --sheet, a contact sheet of those photos, each
captioned "label > what the runs' average says", to judge whether the label or the runs are wrong.

Run: .venv/bin/python bench/run_ensemble.py DATA RUN RUN [RUN ...] [--sheet PNG]
     (e.g. clothing-top10 runs/best-sq272 runs/best-sq272-s1 runs/best-sq272-s2 runs/best-sq272-s3)
"""

from __future__ import annotations

import argparse
import itertools

import numpy as np

from wardrobe.data import load_dataset
from wardrobe.inference import Classifier


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("data")
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--split", default="validation")
    ap.add_argument("--sheet", help="write the photos every run gets wrong to this PNG")
    args = ap.parse_args()
    ds = load_dataset(args.data)
    recs = ds.split(args.split)
    y = np.array([ds.classes.index(r.label) for r in recs])
    probs = {}
    for run in args.runs:
        clf = Classifier.load(run)
        if list(clf.meta["classes"]) != ds.classes:
            raise SystemExit(f"{run} was trained on other classes than {args.data}")
        probs[run] = clf.predict_proba([r.path for r in recs], show_progress=False)[0]
        print(f"{run}: {(probs[run].argmax(1) == y).mean():.4f}", flush=True)
    for r in range(2, len(args.runs) + 1):
        for subset in itertools.combinations(args.runs, r):
            acc = (sum(probs[k] for k in subset).argmax(1) == y).mean()
            print(f"average of {' + '.join(subset)}: {acc:.4f}")
    wrong = np.array([p.argmax(1) != y for p in probs.values()])
    print(f"{len(recs)} photos: {wrong.all(0).sum()} wrong in every run, {wrong.any(0).sum()} wrong in at least one")
    if args.sheet:
        mean = sum(probs.values()) / len(probs)
        shared = np.flatnonzero(wrong.all(0))
        captions = [f"{recs[i].label} > {ds.classes[mean[i].argmax()]}" for i in shared]
        for i, caption in zip(shared, captions):
            print(f"  {recs[i].path.name}: {caption} ({mean[i].max():.2f}; its label {mean[i][y[i]]:.2f})")
        contact_sheet([recs[i].path for i in shared], captions, args.sheet)
        print(f"wrote {args.sheet}")


def contact_sheet(paths, captions, out, w=220, h=290, cols=7) -> None:
    from PIL import Image, ImageDraw

    rows = max(1, -(-len(paths) // cols))
    sheet = Image.new("RGB", (w * cols, (h + 20) * rows), "white")
    draw = ImageDraw.Draw(sheet)
    for k, (path, text) in enumerate(zip(paths, captions)):
        x, y = (k % cols) * w, (k // cols) * (h + 20)
        with Image.open(path) as im:
            sheet.paste(im.convert("RGB").resize((w, h)), (x, y + 20))
        draw.text((x + 3, y + 3), text, fill="black")
    sheet.save(out)


if __name__ == "__main__":
    main()
