"""Photos/s of `wardrobe train clothing-top10 --preset best` in Lightning's own loop (48 training
batches, no validation; the seconds of trainer.fit), with the colour jitter of today's preset and
with torchvision's ColorJitter, each run in a fresh process, alternately.

Run: .venv/bin/python bench/loop_speed.py [--pairs 2] [--batches 48]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = """
import os, sys, time
import lightning as L
from torchvision.transforms import v2
import wardrobe.training.augment as A
import wardrobe.training.finetune as FT
if os.environ["JITTER"] == "torchvision":
    A.ColorMatrixJitter = v2.ColorJitter
n = int(os.environ["BATCHES"])
init = L.Trainer.__init__
def short(self, *a, **k):
    init(self, *a, **{**k, "limit_train_batches": n, "limit_val_batches": 0, "max_epochs": 1})
L.Trainer.__init__ = short
fit = FT._fit
def timed(trainer, *a, **k):
    t = time.perf_counter()
    fit(trainer, *a, **k)
    print(f"RESULT {n * 32 / (time.perf_counter() - t):.1f}", flush=True)
    os._exit(0)  # the passes after training are not the loop
FT._fit = timed
from wardrobe.cli import main
sys.argv = ["wardrobe", "train", "clothing-top10", "--preset", "best", "--out", sys.argv[1], "--overwrite"]
main()
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=int, default=2)
    ap.add_argument("--batches", type=int, default=48)
    args = ap.parse_args()
    if not os.environ.get("WARDROBE_DATA_DIR") and Path("../shared/data").is_dir():
        os.environ["WARDROBE_DATA_DIR"] = str(Path("../shared/data").resolve())
    with tempfile.TemporaryDirectory(prefix="loop-speed-") as tmp:  # the runs' folders go with it
        out = Path(tmp) / "run"
        for _ in range(args.pairs):
            for jitter in ("torchvision", "one matrix"):
                env = {**os.environ, "JITTER": jitter, "BATCHES": str(args.batches)}
                t = time.perf_counter()
                res = subprocess.run([sys.executable, "-c", CHILD, str(out)], env=env, capture_output=True,
                                     text=True, check=False)
                rate = next((ln.split()[1] for ln in res.stdout.splitlines() if ln.startswith("RESULT")), None)
                if rate is None:
                    raise SystemExit(f"the run failed: {(res.stderr or res.stdout).strip().splitlines()[-1]}")
                print(f"colour jitter {jitter:12s} {rate} photos/s  ({time.perf_counter() - t:.0f} s with set-up)",
                      flush=True)


if __name__ == "__main__":
    main()
