"""Average the weights of two runs of one network and class list (a "model soup", Wortsman et al.
2022) into a new run folder that `wardrobe evaluate` and bench/noise_seeds.py can score: where do the
clean accuracy and the noise cost of the average fall between the two runs'? The new folder takes
RUN_A's config, calibration and logit adjustment (its head bias is the average of both runs').

Run: .venv/bin/python bench/weight_soup.py RUN_A RUN_B OUT [--weight 0.5]
     (e.g. runs/best-sq272 runs/best-sq272-t6 runs/soup-t6), then
     .venv/bin/python bench/noise_seeds.py OUT clothing-top10
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
    ap.add_argument("run_a", type=Path)
    ap.add_argument("run_b", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--weight", type=float, default=0.5, help="weight of RUN_B")
    args = ap.parse_args()
    if args.out.exists():
        raise SystemExit(f"{args.out} exists; choose a new folder")
    (meta, a), (meta_b, b) = (read_model(run) for run in (args.run_a, args.run_b))
    ma, mb = json.loads(meta["wardrobe"]), json.loads(meta_b["wardrobe"])
    if (ma["arch"], ma["classes"]) != (mb["arch"], mb["classes"]):
        raise SystemExit("the two runs differ in network or classes")
    w = args.weight
    soup = {k: ((1 - w) * v.float() + w * b[k].float()).to(v.dtype) if v.is_floating_point() else v
            for k, v in a.items()}
    args.out.mkdir(parents=True)
    for name in ("config.json", "metrics.json"):
        shutil.copy(args.run_a / name, args.out / name)
    save_file(soup, args.out / "model.safetensors", metadata=meta)
    changed = sum(not (a[k] == b[k]).all() for k in a)
    print(f"{args.out}: {changed} of {len(a)} tensors averaged ({1 - w:.2f} {args.run_a}, {w:.2f} {args.run_b})")


if __name__ == "__main__":
    main()
