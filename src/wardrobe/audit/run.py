"""``wardrobe data audit``: what is wrong with a set of labelled photos, found before it ruins the
metrics: source problems, unreadable files, sizes and modes, exact and near duplicates (also across
splits), placeholder labels, class balance and, with embeddings, likely label errors."""

from __future__ import annotations

import json
import os
import re
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from wardrobe.audit.clean import write_clean_manifest
from wardrobe.audit.label_errors import embedding_findings
from wardrobe.audit.queue import write_review_queue
from wardrobe.audit.report import plot_class_histogram, write_html
from wardrobe.data import DataOptions, load_dataset
from wardrobe.data.fingerprints import THUMB_BYTES, hash_cache, iter_scan, remember
from wardrobe.data.hashing import PHASH_THRESHOLD, THUMB_SIMILARITY, groups_from_pairs, near_pairs
from wardrobe.data.presets import PRESETS
from wardrobe.data.sources import Dataset, Record, iter_images, read_table, resolve_image
from wardrobe.errors import WardrobeError
from wardrobe.ui import info

GREY_MODES = {"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"}
SIXTEEN_BIT_MODES = {"I", "I;16", "I;16B", "I;16L", "I;16N", "F"}
# Labels that mean "nobody knew": seed 002 found exactly these in the clothing data.
PLACEHOLDER_LABELS = {"not sure", "notsure", "unsure", "other", "others", "skip", "unknown", "none", "n/a", "na",
                      "?", "misc", "todo", "tbd", "-", "null"}



@dataclass
class AuditOptions:
    expected_labels: list[str] | None = None
    phash_threshold: int = PHASH_THRESHOLD
    thumb_similarity: float = THUMB_SIMILARITY
    embeddings: bool = False
    model: str | None = None
    embedding_similarity: float = 0.97
    folds: int = 5
    workers: int | None = None
    batch_size: int = 32
    runtime: str = "auto"
    show_progress: bool = True


_WHERE = re.compile(r"^(?P<file>.+):(?P<row>\d+) \((?P<ref>.*)\)$")


def _row_ref(where: str) -> dict:
    m = _WHERE.match(where)
    if m:
        return {"manifest": m["file"], "row": int(m["row"]), "image": m["ref"]}
    return {"where": where}


def _source_findings(ds: Dataset, opts: DataOptions) -> dict:
    """What the source itself knows: rows without a file, rows without a label, files without a row."""
    missing, no_label_rows, other, unlabelled = [], [], [], []
    for where, reason in ds.skipped.items:
        if reason == "missing file":
            missing.append(_row_ref(where))
        elif reason.startswith("no label") and ds.description.get("type") in ("folder", "regex"):
            unlabelled.append({"path": where, "reason": reason})
        elif reason == "no label":
            no_label_rows.append(_row_ref(where))
        else:
            other.append({"where": where, "reason": reason})
    all_labels: Counter = Counter()
    rows_by_label: dict[str, list[dict]] = defaultdict(list)
    desc = ds.description
    if desc.get("type") == "manifest":
        manifest, images_dir = Path(desc["manifest"]), Path(desc["images_dir"])
        _, rows = read_table(manifest)
        names = {p.name for p in images_dir.iterdir()}
        extension = desc.get("extension", opts.extension)
        if extension is None and desc.get("preset") in PRESETS:
            extension = ".jpg"
        referenced = set()
        for n, row in enumerate(rows, start=2):
            ref = (row.get(desc["image_col"]) or "").strip()
            label = (row.get(desc["label_col"]) or "").strip()
            if label:
                all_labels[label] += 1
                rows_by_label[label].append({"manifest": manifest.name, "row": n, "image": ref})
            if ref:
                p = resolve_image(images_dir, ref, extension, names)
                if p is not None:
                    referenced.add(os.path.normpath(p))
        manifest_resolved = os.path.normpath(manifest)
        for p in iter_images(images_dir):
            if os.path.normpath(p) not in referenced and os.path.normpath(p) != manifest_resolved:
                unlabelled.append({"path": str(p), "reason": "no row in the manifest"})
    else:
        all_labels = ds.class_counts()
        for r in ds.records:
            rows_by_label[r.label].append({"path": str(r.path)})
    return {"missing_files": missing, "rows_without_label": no_label_rows, "unlabelled_files": unlabelled,
            "other_skipped": other, "labels_in_source": (dict(all_labels), rows_by_label)}


def _label_findings(labels_in_source: tuple[dict, dict], expected: list[str] | None) -> dict:
    labels_in_source, rows_by_label = labels_in_source
    out: dict = {"expected": expected}
    if expected is not None:
        outside = {lab: n for lab, n in labels_in_source.items() if lab not in set(expected)}
        out["outside_expected"] = [{"label": lab, "rows": n, "where": rows_by_label[lab]}
                                   for lab, n in sorted(outside.items(), key=lambda kv: -kv[1])]
    out["placeholders"] = sorted(lab for lab in labels_in_source if lab.strip().lower() in PLACEHOLDER_LABELS)
    # Spelling variants of one class ('T-Shirt', 't shirt', 'tshirt') split its photos in two.
    by_key: dict[str, list[str]] = defaultdict(list)
    for lab in labels_in_source:
        by_key[re.sub(r"[^a-z0-9]", "", lab.lower()).rstrip("s")].append(lab)
    out["variants"] = sorted(sorted(v) for v in by_key.values() if len(v) > 1)
    return out


def _summary(values: list[float]) -> dict:
    if not values:
        return {}
    a = np.asarray(values, dtype=np.float64)
    q = np.percentile(a, [0, 5, 25, 50, 75, 95, 100])
    return {"min": round(q[0], 3), "p5": round(q[1], 3), "p25": round(q[2], 3), "median": round(q[3], 3),
            "p75": round(q[4], 3), "p95": round(q[5], 3), "max": round(q[6], 3), "mean": round(float(a.mean()), 3)}


def _member(rec: Record) -> dict:
    return {"path": str(rec.path), "label": rec.label, "split": rec.split}


def _group(members: list[Record], **extra) -> dict:
    labels = sorted({r.label for r in members})
    splits = sorted({r.split for r in members if r.split})
    return {"members": [_member(r) for r in members], "labels": labels, "splits": splits,
            "spans_splits": len(splits) > 1, "conflicting_labels": len(labels) > 1, **extra}


def audit(data: str | Path, out: str | Path, options: AuditOptions | None = None,
          data_options: DataOptions | None = None, write_clean: str | Path | None = None,
          drop_label_errors: float | None = None, queue: str | Path | None = None, **data_overrides) -> dict:
    """Audit DATA (preset, folder or manifest) and write OUT/audit.json, OUT/audit.html and
    OUT/class_histogram.png; with ``write_clean``, also a cleaned manifest (the photos are never touched).
    ``queue``: a folder where the suspected label errors become a review queue (``wardrobe review``).
    Returns the audit as a dict (what audit.json holds)."""
    if queue is not None and not (options or AuditOptions()).embeddings:
        raise WardrobeError("--queue needs --embeddings (the suspected label errors come from them)")
    t0 = time.perf_counter()
    o = options or AuditOptions()
    # the audit reports every problem instead of stopping at the first; the caller's options stay as they were
    opts = replace(data_options or DataOptions(), strict=False)
    ds = load_dataset(data, opts, **data_overrides)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    src = _source_findings(ds, opts)
    expected = o.expected_labels
    if expected is None and ds.description.get("preset"):
        expected = ds.classes  # what the preset keeps; the rest of its manifest is reported as outside
    labels = _label_findings(src.pop("labels_in_source"), expected)

    # One scan per distinct file, even when several rows name it.
    rows_by_path: dict[str, list[Record]] = defaultdict(list)
    for r in ds.records:
        rows_by_path[os.path.normpath(r.path)].append(r)
    paths = list(rows_by_path)
    info(f"{ds.name}: auditing {len(ds.records)} labelled photos ({len(paths)} files)")
    scan = _scan(paths, rows_by_path, o)
    counts = ds.class_counts()
    class_counts = dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
    duplicate_rows = [{"path": p, "rows": len(rs), "labels": sorted({r.label for r in rs})}
                      for p, rs in rows_by_path.items() if len(rs) > 1]
    exact_groups, near_groups = _duplicates(paths, rows_by_path, scan, o)

    result: dict = {
        "dataset": {"name": ds.name, "source": ds.description, "labelled_rows": len(ds.records),
                    "files": len(paths), "data": str(data)},
        "classes": {"counts": class_counts, "n_classes": len(counts),
                    "imbalance_ratio": round(max(counts.values()) / max(min(counts.values()), 1), 3),
                    "histogram": "class_histogram.png"},
        "splits": dict(Counter(r.split or "none" for r in ds.records)),
        **src,
        "unreadable": scan.unreadable,
        "duplicate_rows": duplicate_rows,
        "labels": labels,
        "sizes": _size_findings(scan.sizes, paths),
        "colour_modes": {"counts": dict(scan.modes), **scan.colour},
        "exif_orientation": scan.orientation,
        "exact_duplicates": _dup_section(exact_groups, {"rule": "identical bytes (blake2b digest)"}),
        "near_duplicates": _dup_section(near_groups, {"rule": f"pHash within {o.phash_threshold} bits and 8x8 "
                                                              f"thumbnail similarity >= {o.thumb_similarity}"}),
    }
    if o.embeddings:
        readable = [i for i in range(len(paths)) if scan.phashes[i] is not None]
        result.update(embedding_findings([rows_by_path[paths[i]][0] for i in readable], o))
    result["summary"] = _counts_summary(result)
    result["seconds"] = round(time.perf_counter() - t0, 2)
    plot_class_histogram(class_counts, out / "class_histogram.png", ds.name)
    if write_clean is not None:
        result["clean"] = write_clean_manifest(ds, result, Path(write_clean), drop_label_errors)
    if queue is not None:
        result["queue"] = write_review_queue(result["label_errors"]["suspects"], ds.classes, Path(queue))

    (out / "audit.json").write_text(json.dumps(result, indent=2, default=str))
    write_html(result, out / "audit.html", out / "class_histogram.png")
    info(f"wrote {out / 'audit.json'} and {out / 'audit.html'} ({time.perf_counter() - t0:.1f} s): "
         + ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in result["summary"].items() if v))
    return result


@dataclass
class _Scan:
    """What one pass over the files found: per file its digest, pHash and thumbnail, and the
    colour, orientation and size findings."""
    digests: list
    phashes: list
    thumbs: np.ndarray
    unreadable: list = field(default_factory=list)
    modes: Counter = field(default_factory=Counter)
    orientation: list = field(default_factory=list)
    sizes: list = field(default_factory=list)
    colour: dict = field(default_factory=lambda: {k: [] for k in ("grayscale", "cmyk", "alpha", "sixteen_bit",
                                                                    "palette")})


def _scan(paths: list[str], rows_by_path: dict, o: AuditOptions) -> _Scan:
    cache = hash_cache()
    scan = _Scan([None] * len(paths), [None] * len(paths), np.zeros((len(paths), THUMB_BYTES), dtype=np.uint8))
    for i, rec in enumerate(iter_scan(paths, o.workers, o.show_progress)):
        remember(cache, rec)
        scan.digests[i] = rec.get("digest")
        if "mode" in rec:
            _colour(scan, paths[i], rec)
        if rec.get("orientation"):
            scan.orientation.append({"path": paths[i], "orientation": rec["orientation"]})
        if "error" in rec:
            scan.unreadable.append({**_member(rows_by_path[paths[i]][0]), "reason": rec["error"]})
            continue
        w, h = rec["width"], rec["height"]
        if rec.get("orientation") in (5, 6, 7, 8):
            w, h = h, w  # sizes as the photo is shown, after its EXIF rotation
        scan.sizes.append((i, w, h, rec["bytes"]))
        scan.phashes[i] = rec["phash"]
        scan.thumbs[i] = np.frombuffer(rec["thumb"], dtype=np.uint8)
    cache.flush()
    return scan


def _colour(scan: _Scan, path: str, rec: dict) -> None:
    m = rec["mode"]
    scan.modes[m] += 1
    for kind, hit in (("grayscale", m in GREY_MODES), ("cmyk", m == "CMYK"), ("palette", m == "P"),
                      ("alpha", rec.get("alpha")), ("sixteen_bit", m in SIXTEEN_BIT_MODES or rec.get("sixteen_bit"))):
        if hit:
            scan.colour[kind].append(path)


def _duplicates(paths: list[str], rows_by_path: dict, scan: _Scan, o: AuditOptions) -> tuple[list, list]:
    """(exact groups, near groups), those spanning splits or with conflicting labels first."""
    # Exact duplicates: identical bytes, whether in one file named by several rows or in several files.
    by_digest: dict[str, list[int]] = defaultdict(list)
    for i, d in enumerate(scan.digests):
        if d is not None:
            by_digest[d].append(i)
    exact = [_group([r for i in idx for r in rows_by_path[paths[i]]], digest=d)
             for d, idx in by_digest.items() if len(idx) > 1]
    # Near duplicates among distinct contents: one representative per digest.
    reps = [idx[0] for idx in by_digest.values() if scan.phashes[idx[0]] is not None]
    near = []
    if reps:
        pairs = near_pairs([scan.phashes[i] for i in reps], scan.thumbs[reps], o.phash_threshold, o.thumb_similarity)
        for g in groups_from_pairs(len(reps), pairs):
            files = [i for k in g for i in by_digest[scan.digests[reps[k]]]]
            near.append(_group([r for i in files for r in rows_by_path[paths[i]]]))
    for groups in (exact, near):
        groups.sort(key=lambda g: (not g["spans_splits"], not g["conflicting_labels"], -len(g["members"])))
    return exact, near


def _dup_section(groups: list[dict], extra: dict) -> dict:
    return {**extra, "groups": groups, "n_groups": len(groups),
            "n_photos": sum(len(g["members"]) for g in groups),
            "n_spanning_splits": sum(g["spans_splits"] for g in groups),
            "n_conflicting_labels": sum(g["conflicting_labels"] for g in groups)}


def _size_findings(sizes: list[tuple[int, int, int, int]], paths: list[str]) -> dict:
    if not sizes:
        return {}
    w = np.array([s[1] for s in sizes], dtype=np.float64)
    h = np.array([s[2] for s in sizes], dtype=np.float64)
    aspect = w / h
    short = np.minimum(w, h)
    med_log_aspect = float(np.median(np.log(aspect)))
    med_short = float(np.median(short))
    outliers = []
    for k, (i, wi, hi, _) in enumerate(sizes):
        why = []
        # A factor of 2 away from the typical shape, or a quarter of the typical resolution.
        if abs(np.log(aspect[k]) - med_log_aspect) > np.log(2):
            why.append(f"aspect ratio {aspect[k]:.2f} (typical {np.exp(med_log_aspect):.2f})")
        if short[k] < max(32, med_short / 4):
            why.append(f"small ({wi}x{hi}, typical short side {med_short:.0f})")
        if short[k] > med_short * 8:
            why.append(f"very large ({wi}x{hi})")
        if why:
            outliers.append({"path": paths[i], "width": wi, "height": hi, "why": "; ".join(why)})
    return {"width": _summary(w.tolist()), "height": _summary(h.tolist()), "aspect_ratio": _summary(aspect.tolist()),
            "bytes": _summary([float(s[3]) for s in sizes]), "outliers": outliers}


def _counts_summary(r: dict) -> dict:
    s = {
        "missing_files": len(r["missing_files"]), "unreadable": len(r["unreadable"]),
        "unlabelled_files": len(r["unlabelled_files"]), "rows_without_label": len(r["rows_without_label"]),
        "labels_outside_expected": sum(x["rows"] for x in r["labels"].get("outside_expected", [])),
        "placeholder_labels": len(r["labels"]["placeholders"]), "label_variants": len(r["labels"]["variants"]),
        "size_outliers": len(r["sizes"].get("outliers", [])),
        "grayscale": len(r["colour_modes"]["grayscale"]), "cmyk": len(r["colour_modes"]["cmyk"]),
        "alpha": len(r["colour_modes"]["alpha"]), "sixteen_bit": len(r["colour_modes"]["sixteen_bit"]),
        "exif_orientation": len(r["exif_orientation"]), "duplicate_rows": len(r["duplicate_rows"]),
        "exact_duplicate_groups": r["exact_duplicates"]["n_groups"],
        "exact_groups_spanning_splits": r["exact_duplicates"]["n_spanning_splits"],
        "near_duplicate_groups": r["near_duplicates"]["n_groups"],
        "near_groups_spanning_splits": r["near_duplicates"]["n_spanning_splits"],
    }
    if "embedding_duplicates" in r:
        s["embedding_duplicate_groups"] = r["embedding_duplicates"]["n_groups"]
    if "label_errors" in r:
        s["suspected_label_errors"] = len(r["label_errors"]["suspects"])
    return s


# --------------------------------------------------------------------------- cleaned manifest

