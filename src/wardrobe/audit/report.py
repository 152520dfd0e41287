"""The audit's figures and its self-contained HTML page (thumbnails inlined as base64)."""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

from wardrobe.data.images import ImageError, load_image
from wardrobe.plotting import pyplot, save

MAX_GROUPS = 100  # per kind of duplicate group shown as thumbnails; audit.json lists them all
MAX_SUSPECTS = 100
MAX_ROWS = 200


def plot_class_histogram(counts: dict[str, int], path: Path, title: str = "") -> None:
    plt = pyplot()

    names = list(counts)[::-1]
    fig, ax = plt.subplots(figsize=(7, max(2.5, 0.3 * len(names) + 1)))
    ax.barh(names, [counts[n] for n in names], color="#4a78b5")
    for k, n in enumerate(names):
        ax.text(counts[n], k, f" {counts[n]}", va="center", fontsize=8)
    ax.set_xlabel("photos")
    ax.set_title(f"{title} classes".strip())
    fig.tight_layout()
    save(fig, path, dpi=100)


def _thumb(path: str, side: int = 96) -> str:
    try:
        img = load_image(path, min_side=side)
    except ImageError:
        return ""
    img.thumbnail((side, side))
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()


def _figure(m: dict, note: str = "") -> str:
    src = _thumb(m["path"])
    img = f'<img src="{src}" alt="">' if src else '<div class="bad">cannot show</div>'
    cap = f"{html.escape(m['label'])}{' · ' + m['split'] if m.get('split') else ''}{note}"
    return (f'<figure title="{html.escape(m["path"])}">{img}<figcaption>{cap}<br>'
            f'<small>{html.escape(Path(m["path"]).name)}</small></figcaption></figure>')


def _groups(section: dict, title: str) -> str:
    groups = section.get("groups", [])
    parts = [f"<h2>{title} ({len(groups)} groups, {section.get('n_spanning_splits', 0)} across splits, "
             f"{section.get('n_conflicting_labels', 0)} with conflicting labels)</h2>",
             f"<p class=rule>{html.escape(section.get('rule', ''))}</p>"]
    for g in groups[:MAX_GROUPS]:
        flags = (["<b class=flag>spans splits</b>"] if g["spans_splits"] else []) + \
                (["<b class=flag>conflicting labels</b>"] if g["conflicting_labels"] else [])
        parts.append(f"<div class=group>{' '.join(flags)}<div class=row>"
                     + "".join(_figure(m) for m in g["members"][:12]) + "</div></div>")
    if len(groups) > MAX_GROUPS:
        parts.append(f"<p>{len(groups) - MAX_GROUPS} more groups in audit.json</p>")
    return "\n".join(parts)


def _table(rows: list[dict], title: str, cols: list[str]) -> str:
    if not rows:
        return f"<h2>{title}: none</h2>"
    head = "".join(f"<th>{c}</th>" for c in cols)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(r.get(c, '')))}</td>" for c in cols) + "</tr>"
                   for r in rows[:MAX_ROWS])
    more = f"<p>{len(rows) - MAX_ROWS} more in audit.json</p>" if len(rows) > MAX_ROWS else ""
    return f"<h2>{title} ({len(rows)})</h2><table><tr>{head}</tr>{body}</table>{more}"


CSS = """body{font-family:sans-serif;margin:1.5em;color:#222}table{border-collapse:collapse;font-size:13px}
td,th{border:1px solid #ccc;padding:2px 6px;text-align:left}figure{display:inline-block;margin:4px;width:110px;
vertical-align:top;font-size:11px;word-break:break-all}figure img{max-width:96px;max-height:96px}
.group{border:1px solid #ddd;margin:6px 0;padding:4px}.flag{color:#b00;margin-right:1em}.rule{color:#666}
.bad{width:96px;height:96px;background:#eee}"""


def write_html(result: dict, path: Path, histogram: Path | None = None) -> None:
    ds = result["dataset"]
    summary = "".join(f"<tr><td>{k.replace('_', ' ')}</td><td>{v}</td></tr>" for k, v in result["summary"].items())
    hist = ""
    if histogram is not None and histogram.is_file():
        hist = f'<img src="data:image/png;base64,{base64.b64encode(histogram.read_bytes()).decode()}" alt="classes">'
    sizes = result.get("sizes", {})
    size_rows = [{"what": k, **v} for k, v in sizes.items() if k != "outliers" and v]
    labels = result["labels"]
    label_rows = [{"finding": "outside the expected set", "labels": f"{x['label']} ({x['rows']} rows)"}
                  for x in labels.get("outside_expected", [])]
    label_rows += [{"finding": "placeholder", "labels": x} for x in labels["placeholders"]]
    label_rows += [{"finding": "spelling variants", "labels": ", ".join(v)} for v in labels["variants"]]
    modes = result["colour_modes"]
    mode_rows = [{"kind": k, "count": len(v), "e.g.": ", ".join(Path(p).name for p in v[:5])}
                 for k, v in modes.items() if k != "counts" and v]
    parts = [
        f"<!doctype html><html><head><meta charset=utf-8><title>audit: {html.escape(ds['name'])}</title>"
        f"<style>{CSS}</style></head><body>",
        f"<h1>Audit of {html.escape(ds['name'])}</h1><p>{ds['labelled_rows']} labelled rows, {ds['files']} files, "
        f"{result['classes']['n_classes']} classes, imbalance ratio {result['classes']['imbalance_ratio']} "
        f"(largest / smallest class); splits {html.escape(str(result['splits']))}</p>",
        f"<table>{summary}</table>", hist,
        _table(result["missing_files"], "Rows whose file is missing", ["manifest", "row", "image", "where"]),
        _table(result["unreadable"], "Unreadable or truncated photos", ["path", "label", "reason"]),
        _table(result["unlabelled_files"], "Files with no label", ["path", "reason"]),
        _table(result["rows_without_label"], "Rows without a label", ["manifest", "row", "image"]),
        _table(label_rows, "Labels to check", ["finding", "labels"]),
        _table(size_rows, "Sizes", ["what", "min", "p5", "median", "p95", "max"]),
        _table(sizes.get("outliers", []), "Size outliers", ["path", "width", "height", "why"]),
        _table(mode_rows, "Colour modes " + html.escape(str(modes["counts"])), ["kind", "count", "e.g."]),
        _table(result["exif_orientation"], "EXIF orientation present", ["path", "orientation"]),
        _table(result["duplicate_rows"], "Files named by several rows", ["path", "rows", "labels"]),
        _groups(result["exact_duplicates"], "Exact duplicates"),
        _groups(result["near_duplicates"], "Near duplicates (perceptual hash)"),
    ]
    if "embedding_duplicates" in result:
        parts.append(_groups(result["embedding_duplicates"], "Near duplicates (embeddings)"))
    if "label_errors" in result:
        le = result["label_errors"]
        parts.append(f"<h2>Suspected label errors ({len(le['suspects'])})</h2><p class=rule>"
                     f"{html.escape(le['method'])}; most suspicious first</p><div class=row>")
        parts.extend(_figure(s, f"<br>→ {html.escape(s['suggested'])} ({s['prob_suggested']:.2f}); "
                                f"p(label) {s['prob_given']:.3f}") for s in le["suspects"][:MAX_SUSPECTS])
        parts.append("</div>")
    if "clean" in result:
        c = result["clean"]
        parts.append(f"<h2>Cleaned manifest</h2><p>{html.escape(c['path'])}: {c['kept']} kept, "
                     f"{len(c['dropped'])} dropped</p>")
    parts.append("</body></html>")
    path.write_text("\n".join(parts), encoding="utf-8")
