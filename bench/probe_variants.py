"""The probe design choices in the README: head features (raw vs signed square root) and resize
mode (centre crop vs squash), Lite0 on clothing-top10 validation.
Run: WARDROBE_DATA_DIR=../shared/data .venv/bin/python bench/probe_variants.py"""

from __future__ import annotations

import dataclasses

import numpy as np

from wardrobe.data import load_dataset
from wardrobe.models import create_backbone
from wardrobe.training.embeddings import extract_embeddings
from wardrobe.training.probe import DEFAULT_CS, fit_linear_probe, head_features


def main() -> None:
    ds = load_dataset("clothing-top10")
    recs = ds.split("train") + ds.split("validation")
    n = len(ds.split("train"))
    y = np.array([ds.classes.index(r.label) for r in recs])
    for resize_mode in ("crop", "squash"):
        bb = create_backbone("efficientnet_lite0")
        bb.preprocess = dataclasses.replace(bb.preprocess, resize_mode=resize_mode)
        feats, _, _ = extract_embeddings([r.path for r in recs], bb, show_progress=False)
        for head in ("linear", "sqrt_linear"):
            f = head_features(feats, head)
            w, b, s = fit_linear_probe(f[:n], y[:n], f[n:], y[n:], len(ds.classes), cs=DEFAULT_CS)
            best = next(h for h in s["search"] if h["C"] == s["C"])
            print(f"resize={resize_mode:6s} head={head:11s} C={s['C']:<6} val log-loss {best['val_log_loss']:.3f} "
                  f"accuracy {best['val_accuracy']:.4f}")


if __name__ == "__main__":
    main()
