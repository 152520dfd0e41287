"""Rich tables for the evaluation suite's commands (the CLI prints them to standard output)."""

from __future__ import annotations

from rich.table import Table


def calibration_line(result: dict) -> str:
    c = result.get("calibration") or {}
    if "ece" not in c:
        return ""
    line = f"calibration: ECE ({c.get('bins', 15)} bins) {c['ece']:.4f}"
    if "ece_after" in c:
        line += f" -> {c['ece_after']:.4f} with temperature {c['fitted_temperature']:.3f} (stored in the model file)"
    return line


def robustness_table(rob: dict) -> Table:
    t = Table(title=f"robustness ({rob['n_images']} photos)")
    for col in ("corruption", "accuracy", "drop", "macro-F1", "drop"):
        t.add_column(col, justify="left" if col == "corruption" else "right")
    clean = rob["clean"]
    t.add_row("clean", f"{clean['accuracy']:.4f}", "", f"{clean['f1_macro']:.4f}", "")
    for name, r in rob["corruptions"].items():
        t.add_row(name, f"{r['accuracy']:.4f}", f"{r['accuracy_drop']:+.4f}", f"{r['f1_macro']:.4f}",
                  f"{r['f1_macro_drop']:+.4f}")
    return t


def speed_table(r: dict) -> Table:
    m = r["machine"]
    threads = ", ".join(f"{k} {v}" for k, v in m["threads"].items())
    t = Table(title=f"{r['model']} at {r['input_size']} px, {r['runtime']} runtime; {m['cpu']} "
                    f"({m['cpu_count']} CPUs; threads: {threads}); photos: {r['photos']}")
    for col in ("measure", "model only", "with JPEG decoding"):
        t.add_column(col, justify="left" if col == "measure" else "right")
    s, b = r["single"], r["batch"]
    t.add_row("1 photo, p50 (ms)", f"{s['model_only_ms']['p50']:.1f}", f"{s['with_decoding_ms']['p50']:.1f}")
    t.add_row("1 photo, p95 (ms)", f"{s['model_only_ms']['p95']:.1f}", f"{s['with_decoding_ms']['p95']:.1f}")
    t.add_row(f"batch of {b['size']} (photos/s)", f"{b['model_only_photos_per_s']:.1f}",
              f"{b['with_decoding_photos_per_s']:.1f}")
    return t
