"""Trusted labels in an evaluation: how many photos could be auto-labelled at a given precision
(the coverage-precision curve), and what the model's stored thresholds give on these photos."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from wardrobe.plotting import pyplot, save
from wardrobe.selection import accept, coverage_at, coverage_precision, thresholds_for

REPORTED = (0.95, 0.98, 0.99)


def trusted_summary(probs: np.ndarray, y: np.ndarray, classes: list[str], selection: dict | None,
                    temperature: float) -> dict:
    """``coverage_at_precision``: the coverage one threshold for every class reaches at each
    precision when chosen on these very photos (an oracle); ``stored``: coverage and precision of the thresholds fitted at training
    or calibration time (an honest figure on photos they were not fitted on)."""
    out: dict = {"coverage_at_precision": {f"{t:g}": coverage_at(probs, y, t) for t in REPORTED}}
    same_t = selection and abs(float(selection.get("temperature", 1.0)) - temperature) < 1e-6
    if same_t:
        right = probs.argmax(1) == y
        out["stored"] = {"fitted_on": selection.get("fitted_on")}
        for rule, conservative in (("targets", False), ("conservative", True)):
            stored = {}
            for key in selection.get(rule, {}):
                ok = accept(probs, classes, thresholds_for(selection, float(key), conservative))
                stored[key] = {"coverage": float(ok.mean()) if len(ok) else 0.0,
                               "precision": float(right[ok].mean()) if ok.any() else None, "accepted": int(ok.sum())}
            out["stored"][rule] = stored
    return out


def plot_coverage_precision(probs: np.ndarray, y: np.ndarray, path: Path, summary: dict, title: str = "") -> None:
    plt = pyplot()
    cov, prec = coverage_precision(probs, y)
    fig, ax = plt.subplots(figsize=(6, 4.2))
    ax.plot(cov, prec, lw=2, label="most confident photos first")
    for key, s in ((summary.get("stored") or {}).get("targets") or {}).items():
        if s["precision"] is not None and float(key) in REPORTED:
            ax.plot([s["coverage"]], [s["precision"]], "o", label=f"stored threshold, target {key}")
    for t in REPORTED:
        ax.axhline(t, color="grey", lw=0.6, ls=":")
    ax.set_xlabel("coverage (share of photos auto-labelled)")
    ax.set_ylabel("precision of the auto-labels")
    ax.set_ylim(max(0.5, float(prec.min()) - 0.02) if len(prec) else 0.5, 1.005)
    ax.set_xlim(0, 1)
    ax.legend(loc="lower left", fontsize=8)
    ax.set_title(title)
    save(fig, path)


def trusted_html(summary: dict, png: Path | None, img_tag, table) -> str:
    rows = [[f"precision {k}", f"{v:.3f}"] for k, v in summary["coverage_at_precision"].items()]
    body = table(["one threshold chosen on these photos, at", "coverage"], rows)
    for rule in ("targets", "conservative"):
        stored = (summary.get("stored") or {}).get(rule) or {}
        if stored:
            name = "stored thresholds" + (" (conservative)" if rule == "conservative" else "") + ", target"
            body += table([name, "coverage", "precision", "accepted"],
                          [[k, f"{s['coverage']:.3f}", "-" if s["precision"] is None else f"{s['precision']:.3f}",
                            s["accepted"]] for k, s in stored.items()])
    if png is not None and png.is_file():
        body += img_tag(png, "coverage-precision curve")
    return body
