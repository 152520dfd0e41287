"""Average the weights of runs of one network and class list (a "model soup", Wortsman et al.
2022) into a new run folder that `wardrobe evaluate` and bench/noise_seeds.py can score: where do the
clean accuracy and the noise cost of the average fall against the runs'? The new folder takes
the first run's config, calibration and logit adjustment (its head bias is the runs' average).

Run: .venv/bin/python bench/weight_soup.py RUN_A RUN_B [RUN ...] --out OUT [--weight 0.5]
     (e.g. runs/best-sq272 runs/best-sq272-t6 --out runs/soup-t6), then
     .venv/bin/python bench/noise_seeds.py OUT clothing-top10
--weight is RUN_B's share when there are two runs; more runs are averaged uniformly.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from safetensors import safe_open
from safetensors.torch import save_file


def read_model(run: Path) -> tuple[dict, dict]:
    """A run's model file in one read: (its metadata, its tensors)."""
    with safe_open(str(run / "model.safetensors"), "pt") as f:
        return f.metadata(), {k: f.get_tensor(k) for k in f.keys()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("runs", type=Path, nargs="+")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--weight", type=float, default=0.5, help="weight of the second run, with two runs")
    args = ap.parse_args()
    if len(args.runs) < 2:
        raise SystemExit("give two runs or more")
    if args.out.exists():
        raise SystemExit(f"{args.out} exists; choose a new folder")
    models = [read_model(run) for run in args.runs]
    metas = [json.loads(m["wardrobe"]) for m, _ in models]
    if any((m["arch"], m["classes"]) != (metas[0]["arch"], metas[0]["classes"]) for m in metas):
        raise SystemExit("the runs differ in network or classes")
    n = len(models)
    weights = [1 - args.weight, args.weight] if n == 2 else [1 / n] * n
    first = models[0][1]
    soup = {k: sum(w * t[k].float() for w, (_, t) in zip(weights, models)).to(v.dtype)
            if v.is_floating_point() else v for k, v in first.items()}
    args.out.mkdir(parents=True)
    for name in ("config.json", "metrics.json"):
        shutil.copy(args.runs[0] / name, args.out / name)
    save_file(soup, args.out / "model.safetensors", metadata=models[0][0])
    changed = sum(any(not (t[k] == first[k]).all() for _, t in models[1:]) for k in first)
    shares = ", ".join(f"{w:.2f} {run}" for w, run in zip(weights, args.runs))
    print(f"{args.out}: {changed} of {len(first)} tensors averaged ({shares})")


if __name__ == "__main__":
    main()
