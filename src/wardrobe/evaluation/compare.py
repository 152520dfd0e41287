"""Model comparison: train and evaluate several networks on the same split (or the same folds)
and rank them in one leaderboard of quality, size, cost and speed."""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path

import numpy as np
from rich.table import Table

from wardrobe.data import DataOptions
from wardrobe.errors import WardrobeError
from wardrobe.evaluation.cv import cross_validate
from wardrobe.evaluation.speed import bench, params_and_mflops
from wardrobe.models.modelfile import load_model
from wardrobe.plotting import pyplot, save
from wardrobe.training import train
from wardrobe.training.options import TrainOptions
from wardrobe.training.runfolder import check_out
from wardrobe.transforms import Preprocess
from wardrobe.ui import info

COLUMNS = [("model", "model"), ("accuracy", "accuracy"), ("f1_macro", "macro-F1"), ("f1_weighted", "weighted-F1"),
           ("map_macro", "mAP"), ("params_m", "params (M)"), ("mflops", "MFLOPs"), ("latency_ms", "latency p50 (ms)"),
           ("train_seconds", "training (s)")]
QUALITY = ("accuracy", "f1_macro", "f1_weighted", "map_macro")


def compare(data: str | Path, models: list[str], out: str | Path, folds: int | None = None, seed: int = 0,
            data_options: DataOptions | None = None, batch_size: int | None = None, workers: int | None = None,
            runtime: str = "auto", show_progress: bool = True, latency_runs: int = 20, overwrite: bool = False,
            options: TrainOptions | None = None, **train_options) -> dict:
    """Train each of ``models`` on DATA with the same options and seed, so they share one split (or,
    with ``folds``, the same stratified folds); write OUT/<model>/ runs and OUT/leaderboard.{md,csv,png}.

    Quality is measured on the validation split (with ``folds``: the mean over folds); latency is the
    median single-photo time without decoding (wardrobe.evaluation.speed); MFLOPs count one photo at
    the model's input size."""

    models = [m.strip() for m in models if m.strip()]
    if not models:
        raise WardrobeError("--models: name at least one model (e.g. efficientnet_lite0,efficientnet_lite1)")
    if len(set(models)) != len(models):
        raise WardrobeError(f"--models {','.join(models)}: a model is named twice")
    out = Path(out)
    check_out(out, overwrite, what="a comparison")
    opts = data_options or DataOptions()
    rows = []
    for name in models:
        info(f"compare: {name}")
        run_dir = out / name.replace("/", "_")
        t0 = time.perf_counter()
        common = dict(data_options=DataOptions(**opts.to_dict()), seed=seed, batch_size=batch_size, workers=workers,
                      runtime=runtime, show_progress=show_progress, model=name, options=options, **train_options)
        if folds:
            cv = cross_validate(data, run_dir, folds=folds, overwrite=True, **common)
            quality = {k: cv["aggregate"][k]["mean"] for k in QUALITY}
            quality |= {f"{k}_std": cv["aggregate"][k]["std"] for k in QUALITY}
            model_path = run_dir / "fold-1" / "model.safetensors"
        else:
            result = train(data, run_dir, overwrite=True, **common)
            quality = {k: result.metrics[k] for k in QUALITY}
            model_path = result.model_path
        train_seconds = time.perf_counter() - t0
        net, meta = load_model(model_path)
        size = int(meta["preprocess"]["input_size"])
        params, mflops = params_and_mflops(net, Preprocess.from_dict(meta["preprocess"]).hw)
        speed = bench(model_path, runtime=runtime, single_runs=latency_runs, batch_runs=1, batch_size=8)
        rows.append({"model": name, **quality, "params_m": params / 1e6, "mflops": mflops, "input_size": size,
                     "latency_ms": speed["single"]["model_only_ms"]["p50"],
                     "train_seconds": round(train_seconds, 1), "run": str(run_dir)})
    rows.sort(key=lambda r: (-r["f1_macro"], -r["accuracy"]))
    result = {"data": str(data), "seed": seed, "folds": folds, "split": f"{folds}-fold CV" if folds else "validation",
              "train_options": {k: str(v) for k, v in train_options.items()}, "leaderboard": rows}
    out.mkdir(parents=True, exist_ok=True)
    (out / "leaderboard.json").write_text(json.dumps(result, indent=2))
    _write(out, rows, result["split"])
    info(f"wrote {out / 'leaderboard.md'}, leaderboard.csv, leaderboard.png")
    return result


def _cell(key: str, v) -> str:
    if isinstance(v, str):
        return v
    if key in QUALITY:
        return f"{v:.4f}"
    if key == "params_m":
        return f"{v:.2f}"
    return f"{v:.1f}" if isinstance(v, float) else str(v)


def _write(out: Path, rows: list[dict], split: str) -> None:
    with (out / "leaderboard.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow([k for k, _ in COLUMNS])
        for r in rows:
            w.writerow([r[k] if isinstance(r[k], str) else round(r[k], 6) for k, _ in COLUMNS])
    lines = [f"Quality on {split}.", "", "| " + " | ".join(h for _, h in COLUMNS) + " |",
             "|" + " --- |" * len(COLUMNS)]
    lines += ["| " + " | ".join(_cell(k, r[k]) for k, _ in COLUMNS) + " |" for r in rows]
    (out / "leaderboard.md").write_text("\n".join(lines) + "\n")
    _plot(rows, out / "leaderboard.png", split)


def _plot(rows: list[dict], path: Path, split: str) -> None:
    plt = pyplot()

    names = [r["model"] for r in rows]
    x = np.arange(len(names))
    fig, (ax, axl) = plt.subplots(1, 2, figsize=(max(8, 2.2 * len(names) + 4), 4), gridspec_kw={"width_ratios": [3, 1]})
    width = 0.8 / len(QUALITY)
    labels = dict(COLUMNS)
    for i, k in enumerate(QUALITY):
        ax.bar(x + (i - (len(QUALITY) - 1) / 2) * width, [r[k] for r in rows], width, label=labels[k])
    ax.set_xticks(x, names, rotation=20, ha="right", fontsize=8)
    lo = min(r[k] for r in rows for k in QUALITY)
    ax.set_ylim(max(0.0, lo - 0.1), 1.0)
    ax.set_title(f"quality ({split})")
    ax.legend(fontsize=7, loc="lower right")
    axl.bar(x, [r["latency_ms"] for r in rows], color="tab:gray")
    axl.set_xticks(x, names, rotation=20, ha="right", fontsize=8)
    axl.set_title("latency p50 (ms, 1 photo)")
    fig.tight_layout()
    save(fig, path, dpi=110)


def leaderboard_table(result: dict):

    t = Table(title=f"leaderboard: {result['data']} ({result['split']})")
    for k, h in COLUMNS:
        t.add_column(h, justify="left" if k == "model" else "right")
    for r in result["leaderboard"]:
        t.add_row(*(_cell(k, r[k]) for k, _ in COLUMNS))
    return t
