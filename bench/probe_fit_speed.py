"""The probe's logistic-regression fit on the cached multi-level Lite1 embeddings of clothing-top10:
time and validation (accuracy, log-loss, iterations) per C of the warm-started path, for float32
and float64 inputs and three L-BFGS tolerances. Needs the embeddings cached (run the probe once).
Run: WARDROBE_DATA_DIR=../shared/data .venv/bin/python bench/probe_fit_speed.py"""

import time
import warnings

import numpy as np
from sklearn.linear_model import LogisticRegression

from wardrobe.data import load_dataset
from wardrobe.evaluation.speed import cpu_model
from wardrobe.models import create_backbone
from wardrobe.models.levels import use_levels
from wardrobe.training.embeddings import extract_embeddings
from wardrobe.training.probe import head_features

ds = load_dataset("clothing-top10")
recs = ds.split("train") + ds.split("validation"); n = len(ds.split("train"))
y = np.array([ds.classes.index(r.label) for r in recs])
bb = create_backbone("efficientnet_lite1"); use_levels(bb.model, 3)
f = head_features(extract_embeddings([r.path for r in recs], bb, show_progress=False)[0], "sqrt_linear")

print("host:", cpu_model(), "| embeddings", f.dtype, f.shape)
m, s = f[:n].mean(0), f[:n].std(0) + 1e-6
for dt in (np.float32, np.float64):
    xt, xv = ((f[:n] - m) / s).astype(dt), ((f[n:] - m) / s).astype(dt)
    for tol in (1e-4, 3e-4, 1e-3):
        t = time.perf_counter(); clf = None; out = []
        for c in (0.003, 0.01, 0.03):
            prev = clf
            clf = LogisticRegression(C=c, max_iter=300, tol=tol, warm_start=True)
            if prev is not None: clf.coef_, clf.intercept_ = prev.coef_.copy(), prev.intercept_.copy()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore"); clf.fit(xt, y[:n])
            p = clf.predict_proba(xv); out.append((round(float((p.argmax(1) == y[n:]).mean()), 4), round(float(-np.log(p[np.arange(len(xv)), y[n:]]).mean()), 4), int(clf.n_iter_[0])))
        print(dt.__name__, tol, f"{time.perf_counter() - t:.2f}s", out, flush=True)
