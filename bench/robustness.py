"""Noise robustness of the probe before and after hardening, on clothing-top10 validation.

Trains the plain probe and the hardened probe (`--noise 0.1`: the logistic regression also sees
embeddings of a noisy copy of every training photo), then evaluates both with --robustness.
Run: flock /tmp/wardrobe-bench.lock nice -n 0 .venv/bin/python bench/robustness.py [OUT]
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import wardrobe

out = Path(sys.argv[1] if len(sys.argv) > 1 else "runs/bench-robustness")
SIGMA = 0.1
rows = {}
for name, opts in (("plain probe", {}), (f"hardened probe (--noise {SIGMA})", {"noise": SIGMA})):
    t0 = time.perf_counter()
    run_dir = out / ("hardened" if opts else "plain")
    wardrobe.train("clothing-top10", run_dir, show_progress=False, **opts)
    train_s = time.perf_counter() - t0
    m = wardrobe.evaluate(run_dir, "clothing-top10", run_dir / "eval", robustness=True, show_progress=False)
    rows[name] = {"train_seconds": round(train_s, 1), "clean": m["robustness"]["clean"],
                  **{k: v for k, v in m["robustness"]["corruptions"].items()}}

keys = list(next(iter(rows.values())))[2:]
print(f"clothing-top10 validation ({m['n_images']} photos): accuracy (change from clean, points)")
print("| model | clean | " + " | ".join(keys) + " |")
print("| --- |" + " --- |" * (len(keys) + 1))
for name, r in rows.items():
    cells = [f"{r[k]['accuracy']:.4f} ({-100 * r[k]['accuracy_drop']:+.1f})" for k in keys]
    print(f"| {name} | {r['clean']['accuracy']:.4f} | " + " | ".join(cells) + " |")
print("training wall time (s): " + ", ".join(f"{n} {r['train_seconds']}" for n, r in rows.items()))
(out / "robustness.json").write_text(json.dumps(rows, indent=2))
