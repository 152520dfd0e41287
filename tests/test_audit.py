"""Dataset audit: every planted defect is found, nothing is invented on a clean folder, the cleaned
manifest trains, memory stays bounded, and train warns about duplicates across its split."""

from __future__ import annotations

import csv
import json
import os
import shutil
import time
import tracemalloc
from itertools import combinations
from pathlib import Path

import numpy as np
import pytest
from conftest import real_data_root, shape_image
from PIL import Image
from synthetic_photos import EDITS, edited_copy, varied_photo
from typer.testing import CliRunner

import wardrobe
from wardrobe.audit import AuditOptions, audit
from wardrobe.cli import app
from wardrobe.data.cache import file_digest
from wardrobe.data.fingerprints import leakage_message, scan_file, split_leakage
from wardrobe.data.sources import Record

runner = CliRunner()
FAST = AuditOptions(workers=0, show_progress=False)


def _save(img: Image.Image, path: Path, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, **kw)
    return path


@pytest.fixture(scope="module")
def planted(tmp_path_factory) -> dict:
    """A manifest + images folder holding one (or two) of every defect the audit looks for."""
    root = tmp_path_factory.mktemp("planted")
    imgs = root / "images"
    rows: list[tuple[str, str, str]] = []
    for k, label in enumerate(("a", "b", "c")):
        for i in range(8):
            name = f"{label}{i}.jpg"
            _save(varied_photo(100 * k + i), imgs / name, quality=90)
            rows.append((name, label, "validation" if i >= 6 else "train"))
    # exact duplicate spanning splits, and one with a conflicting label
    shutil.copyfile(imgs / "a0.jpg", imgs / "a0_copy.jpg")
    rows.append(("a0_copy.jpg", "a", "validation"))
    shutil.copyfile(imgs / "b1.jpg", imgs / "b1_copy.jpg")
    rows.append(("b1_copy.jpg", "c", "train"))
    # near duplicate: resized and re-encoded, in the other split
    _save(edited_copy(Image.open(imgs / "c2.jpg").convert("RGB"), "resize", 7), imgs / "c2_small.jpg", quality=60)
    rows.append(("c2_small.jpg", "c", "validation"))
    # unreadable: truncated, empty, not an image
    data = (imgs / "b3.jpg").read_bytes()
    (imgs / "truncated.jpg").write_bytes(data[: len(data) // 2])
    (imgs / "empty.jpg").write_bytes(b"")
    (imgs / "notimage.jpg").write_text("hello")
    rows += [("truncated.jpg", "b", "train"), ("empty.jpg", "a", "train"), ("notimage.jpg", "c", "train")]
    # colour modes, EXIF orientation, sizes
    _save(varied_photo(900).convert("L"), imgs / "grey.png")
    _save(varied_photo(901).convert("CMYK"), imgs / "cmyk.jpg")
    _save(varied_photo(902).convert("RGBA"), imgs / "alpha.png")
    arr16 = (np.asarray(varied_photo(903).convert("L"), dtype=np.uint16) * 257)
    _save(Image.fromarray(arr16), imgs / "deep.png")
    exif = Image.Exif()
    exif[0x0112] = 6
    _save(varied_photo(904), imgs / "rotated.jpg", exif=exif.tobytes())
    _save(varied_photo(905, size=(600, 60)), imgs / "banner.jpg")
    _save(varied_photo(906, size=(20, 16)), imgs / "tiny.jpg")
    for n, lab in (("grey.png", "a"), ("cmyk.jpg", "b"), ("alpha.png", "c"), ("deep.png", "a"),
                   ("rotated.jpg", "b"), ("banner.jpg", "c"), ("tiny.jpg", "a")):
        rows.append((n, lab, "train"))
    # labels outside the expected set (also placeholders), spelling variants, a file named twice
    _save(varied_photo(907), imgs / "unsure.jpg")
    _save(varied_photo(908), imgs / "other.jpg")
    _save(varied_photo(909), imgs / "variant.jpg")
    rows += [("unsure.jpg", "Not sure", "train"), ("other.jpg", "Other", "train"), ("variant.jpg", "A", "train")]
    rows.append(("a5.jpg", "a", "train"))  # a5.jpg named by two rows
    # rows whose file is missing; files no row names
    rows += [("gone1.jpg", "a", "train"), ("gone2.jpg", "b", "validation")]
    _save(varied_photo(910), imgs / "orphan1.jpg")
    _save(varied_photo(911), imgs / "orphan2.png")
    manifest = root / "labels.csv"
    with manifest.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["file", "label", "split"])
        w.writerows(rows)
    return {"root": root, "imgs": imgs, "manifest": manifest}


@pytest.fixture(scope="module")
def planted_audit(planted, tmp_path_factory) -> tuple[dict, Path, dict]:
    out = tmp_path_factory.mktemp("audit")
    before = {p.name: file_digest(p) for p in planted["imgs"].iterdir()}
    result = audit(planted["manifest"], out, AuditOptions(expected_labels=["a", "b", "c"], workers=0,
                                                          show_progress=False),
                   images_dir=str(planted["imgs"]), image_col="file", write_clean=out / "clean.csv")
    return result, out, before


def _names(items, key="path"):
    return {Path(x[key]).name for x in items}


def test_planted_defects_are_each_found(planted_audit):
    r, out, _ = planted_audit
    assert json.loads((out / "audit.json").read_text())["summary"] == r["summary"]
    assert {m["image"] for m in r["missing_files"]} == {"gone1.jpg", "gone2.jpg"}
    assert all(m["manifest"] == "labels.csv" and m["row"] > 1 for m in r["missing_files"])
    assert _names(r["unlabelled_files"]) == {"orphan1.jpg", "orphan2.png"}
    reasons = {Path(u["path"]).name: u["reason"] for u in r["unreadable"]}
    assert reasons == {"truncated.jpg": "truncated or corrupt image", "empty.jpg": "empty file (0 bytes)",
                       "notimage.jpg": "not an image (unrecognised format)"}
    outside = {x["label"]: x["rows"] for x in r["labels"]["outside_expected"]}
    assert outside == {"Not sure": 1, "Other": 1, "A": 1}
    assert r["labels"]["placeholders"] == ["Not sure", "Other"]
    assert r["labels"]["variants"] == [["A", "a"]]
    modes = r["colour_modes"]
    assert {Path(p).name for p in modes["grayscale"]} == {"grey.png", "deep.png"}
    assert {Path(p).name for p in modes["cmyk"]} == {"cmyk.jpg"}
    assert {Path(p).name for p in modes["alpha"]} == {"alpha.png"}
    assert {Path(p).name for p in modes["sixteen_bit"]} == {"deep.png"}
    assert [(Path(x["path"]).name, x["orientation"]) for x in r["exif_orientation"]] == [("rotated.jpg", 6)]
    outliers = {Path(x["path"]).name: x["why"] for x in r["sizes"]["outliers"]}
    assert set(outliers) == {"banner.jpg", "tiny.jpg"}
    assert "aspect ratio" in outliers["banner.jpg"] and "small" in outliers["tiny.jpg"]
    assert r["sizes"]["width"]["median"] == 160
    assert [(Path(d["path"]).name, d["rows"]) for d in r["duplicate_rows"]] == [("a5.jpg", 2)]
    assert r["classes"]["counts"]["a"] >= 8 and r["classes"]["imbalance_ratio"] >= 1
    assert (out / "class_histogram.png").stat().st_size > 1000


def test_duplicate_groups_flag_leakage_and_conflicts(planted_audit):
    r, _, _ = planted_audit
    exact = {frozenset(_names(g["members"])): g for g in r["exact_duplicates"]["groups"]}
    assert set(exact) == {frozenset({"a0.jpg", "a0_copy.jpg"}), frozenset({"b1.jpg", "b1_copy.jpg"})}
    g = exact[frozenset({"a0.jpg", "a0_copy.jpg"})]
    assert g["spans_splits"] and not g["conflicting_labels"] and g["splits"] == ["train", "validation"]
    g = exact[frozenset({"b1.jpg", "b1_copy.jpg"})]
    assert g["conflicting_labels"] and g["labels"] == ["b", "c"] and not g["spans_splits"]
    near = [frozenset(_names(g["members"])) for g in r["near_duplicates"]["groups"]]
    assert near == [frozenset({"c2.jpg", "c2_small.jpg"})]
    assert r["near_duplicates"]["groups"][0]["spans_splits"]


def test_html_report_is_self_contained(planted_audit):
    _, out, _ = planted_audit
    page = (out / "audit.html").read_text()
    assert page.count("data:image/jpeg;base64,") >= 6  # thumbnails of both groups' photos
    assert "spans splits" in page and "conflicting labels" in page and "data:image/png;base64," in page
    assert "src=\"/" not in page and "src=\"file:" not in page  # nothing refers to files on disk


def test_clean_manifest_drops_bad_keeps_one_per_group_and_trains(planted, planted_audit, tmp_path):
    r, out, before = planted_audit
    clean = out / "clean.csv"
    with clean.open() as f:
        rows = list(csv.DictReader(f))
    names = [Path(x["image"]).name for x in rows]
    assert len(names) == len(set(names)) == r["clean"]["kept"]
    assert not {"truncated.jpg", "empty.jpg", "notimage.jpg", "gone1.jpg", "gone2.jpg"} & set(names)
    assert "a0.jpg" in names and "a0_copy.jpg" not in names  # the train one of the pair is kept
    assert "b1.jpg" not in names and "b1_copy.jpg" not in names  # a tie between labels: neither is kept
    assert {x["split"] for x in rows} == {"train", "validation"}
    # the user's photos are untouched
    assert {p.name: file_digest(p) for p in planted["imgs"].iterdir()} == before
    # and the cleaned manifest trains as is (only the three classes, the odd labels left out)
    result = wardrobe.train(clean, tmp_path / "run", workers=0, show_progress=False, include=["a", "b", "c"])
    assert result.metrics["counts"]["train"] > 10 and result.metrics["skipped"]["count"] == 0
    assert result.metrics["duplicates_across_splits"]["exact_pairs"] == 0


def test_clean_folder_has_no_findings(tmp_path):
    for k, label in enumerate(("x", "y")):
        for i in range(15):
            _save(varied_photo(5000 + 100 * k + i), tmp_path / "d" / label / f"{i}.jpg", quality=90)
    r = audit(tmp_path / "d", tmp_path / "out", FAST)
    assert not any(r["summary"].values()), r["summary"]
    assert r["classes"]["counts"] == {"x": 15, "y": 15} and r["classes"]["imbalance_ratio"] == 1.0


def test_near_duplicate_recall_and_precision_on_synthetic_photos(tmp_path):
    """Half of 120 distinct photos get an edited copy (re-encoded, resized, cropped, colour-shifted or
    all four); pairs found must match the planted ones at recall and precision >= 0.95."""
    source = {}
    for s in range(120):
        img = varied_photo(20000 + s)
        _save(img, tmp_path / "d" / "x" / f"{s}.png")
        source[f"{s}.png"] = s
        if s % 2 == 0:
            copy = edited_copy(img, EDITS[(s // 2) % len(EDITS)], seed=s)
            _save(copy, tmp_path / "d" / "x" / f"{s}_edit.jpg", quality=85)
            source[f"{s}_edit.jpg"] = s
    r = audit(tmp_path / "d", tmp_path / "out", FAST)
    found = set()
    for g in r["near_duplicates"]["groups"]:
        found.update(combinations(sorted(_names(g["members"])), 2))
    truth = {tuple(sorted(p)) for p in combinations(source, 2) if source[p[0]] == source[p[1]]}
    recall = len(found & truth) / len(truth)
    precision = len(found & truth) / max(len(found), 1)
    assert recall >= 0.95 and precision >= 0.95, (recall, precision)


def test_memory_stays_bounded_on_thousands_of_photos(tmp_path):
    n, side = 2000, 64
    rng = np.random.default_rng(0)
    for i in range(n):
        blocks = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
        img = Image.fromarray(np.kron(blocks, np.ones((side // 8, side // 8, 1), dtype=np.uint8)))
        _save(img, tmp_path / "d" / f"c{i % 3}" / f"{i}.jpg", quality=80)
    import matplotlib.pyplot  # noqa: F401 - imported before measuring, so only the audit's own memory counts

    tracemalloc.start()
    r = audit(tmp_path / "d", tmp_path / "out", FAST)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert r["dataset"]["files"] == n
    pixels = n * side * side * 3
    # a few kilobytes per photo at most, half the pixels of all photos (25 MB) or less
    assert peak < pixels / 2, (peak, pixels)


def test_cli_audit_end_to_end(planted, tmp_path):
    res = runner.invoke(app, ["data", "audit", str(planted["manifest"]), "--images-dir", str(planted["imgs"]),
                              "--image-col", "file", "--out", str(tmp_path / "o"), "--expected-labels", "a,b,c",
                              "--write-clean", str(tmp_path / "clean.csv"), "--workers", "2"])
    assert res.exit_code == 0, res.output
    assert "missing files" in res.stdout and "exact duplicate groups" in res.stdout
    data = json.loads((tmp_path / "o" / "audit.json").read_text())
    assert data["summary"]["missing_files"] == 2 and data["summary"]["unreadable"] == 3
    assert data["summary"]["exact_duplicate_groups"] == 2 and data["summary"]["unlabelled_files"] == 2
    assert (tmp_path / "clean.csv").is_file() and (tmp_path / "o" / "audit.html").is_file()


def test_scan_file_digest_matches_cache_digest(planted):
    p = planted["imgs"] / "a1.jpg"
    rec = scan_file(str(p))
    assert rec["digest"] == file_digest(p) and rec["width"] == 160 and rec["height"] == 128


def test_split_leakage_and_train_warning(tmp_path):
    d = tmp_path / "imgs"
    rows = []
    for k, label in enumerate(("a", "b")):
        for i in range(6):
            _save(varied_photo(7000 + 10 * k + i), d / f"{label}{i}.jpg", quality=90)
            rows.append((f"{label}{i}.jpg", label, "validation" if i >= 4 else "train"))
    shutil.copyfile(d / "a0.jpg", d / "a0_again.jpg")
    rows.append(("a0_again.jpg", "a", "validation"))
    _save(Image.open(d / "b0.jpg").convert("RGB"), d / "b0_reencoded.jpg", quality=50)
    rows.append(("b0_reencoded.jpg", "b", "validation"))
    with (d / "m.csv").open("w", newline="") as f:
        csv.writer(f).writerows([("image", "label", "split"), *rows])
    recs = [Record(d / n, lab, s) for n, lab, s in rows]
    rep = split_leakage(recs, workers=0)
    assert rep["exact_pairs"] == 1 and rep["near_pairs"] == 1
    assert [tuple(Path(p).name for p in pair) for pair in rep["near"]] == [("b0.jpg", "b0_reencoded.jpg")]
    msg = leakage_message(rep)
    assert "1 validation/test photos have an identical photo in train" in msg and "1 more a near duplicate" in msg
    assert leakage_message(split_leakage([r for r in recs if "again" not in str(r.path)
                                          and "reencoded" not in str(r.path)], workers=0)) is None
    result = wardrobe.train(d / "m.csv", tmp_path / "run", workers=0, show_progress=False)
    assert result.metrics["duplicates_across_splits"] == {
        "exact_pairs": 1, "near_pairs": 1, "eval_photos_with_exact_twin_in_train": 1,
        "eval_photos_with_near_twin_in_train": 1}


def test_embeddings_find_planted_label_errors(tmp_path):
    """Two circles labelled 'square' on clearly separable shapes: both are the top suspects, and
    --drop-label-errors leaves them out of the cleaned manifest."""
    d = tmp_path / "imgs"
    d.mkdir()
    rows = []
    for k, kind in enumerate(("circle", "square", "triangle")):
        for i in range(12):
            name = f"{kind}_{i}.jpg"
            shape_image(kind, seed=1000 * k + i).save(d / name, quality=90)
            rows.append((name, "square" if kind == "circle" and i < 2 else kind))
    with (d / "m.csv").open("w", newline="") as f:
        csv.writer(f).writerows([("image", "label"), *rows])
    o = AuditOptions(embeddings=True, workers=0, show_progress=False, folds=4)
    r = audit(d / "m.csv", tmp_path / "out", o, write_clean=tmp_path / "clean.csv", drop_label_errors=0.5)
    suspects = [Path(s["path"]).name for s in r["label_errors"]["suspects"]]
    assert set(suspects[:2]) == {"circle_0.jpg", "circle_1.jpg"}, suspects
    assert r["label_errors"]["suspects"][0]["suggested"] == "circle"
    assert "embedding_duplicates" in r and r["summary"]["suspected_label_errors"] >= 2
    kept = [Path(x["image"]).name for x in csv.DictReader((tmp_path / "clean.csv").open())]
    assert "circle_0.jpg" not in kept and "circle_1.jpg" not in kept and "circle_5.jpg" in kept
    assert "p(label)" in (tmp_path / "out" / "audit.html").read_text()


@pytest.mark.slow
@pytest.mark.skipif(real_data_root() is None, reason="WARDROBE_DATA_DIR has no clothing-dataset")
def test_clothing17_missing_and_unlabelled_match_a_direct_count(tmp_path):
    from wardrobe.data.presets import dataset_root

    root = dataset_root()
    files = set(os.listdir(root / "images"))
    with (root / "images.csv").open() as f:
        ids = [row["image"] for row in csv.DictReader(f)]
    missing = {i for i in ids if f"{i}.jpg" not in files}
    without_row = files - {f"{i}.jpg" for i in ids}
    assert missing and without_row  # both are known to be non-empty for this data
    t0 = time.perf_counter()
    r = audit("clothing-17", tmp_path, AuditOptions(show_progress=False))
    seconds = time.perf_counter() - t0
    assert {m["image"] for m in r["missing_files"]} == missing
    assert _names(r["unlabelled_files"]) == without_row
    assert {x["label"] for x in r["labels"]["outside_expected"]} == {"Not sure", "Other", "Skip"}
    assert r["classes"]["n_classes"] == 17 and r["unreadable"] == []
    assert seconds < 300, seconds


def test_cv_warns_about_duplicates_once_not_per_fold(tmp_path, monkeypatch):
    import importlib

    from wardrobe.evaluation import cv as cv_module

    train_module = importlib.import_module("wardrobe.training.train")  # the module, not the function

    d = tmp_path / "imgs"
    for k, label in enumerate(("a", "b")):
        for i in range(6):
            _save(varied_photo(8000 + 10 * k + i), d / label / f"{label}{i}.jpg", quality=90)
    for j in range(3):  # four identical photos: with 2 folds some of them must sit in different folds
        shutil.copyfile(d / "a" / "a0.jpg", d / "a" / f"a0_copy{j}.jpg")
    said = []
    monkeypatch.setattr(cv_module, "warn", said.append)
    monkeypatch.setattr(train_module, "warn", said.append)
    ds = wardrobe.load_dataset(d)
    folds = cv_module.make_folds([r.label for r in ds.records], 2, 0)
    twins = {i for i, r in enumerate(ds.records) if r.path.name.startswith("a0")}
    apart = any(twins & set(va.tolist()) and twins - set(va.tolist()) for _, va in folds)
    cv_module.cross_validate(d, tmp_path / "cv", folds=2, workers=0, show_progress=False, report=False)
    dup = [m for m in said if "duplicates cross" in m]
    assert len(dup) == (1 if apart else 0), said
    if apart:
        assert "identical photo in their fold's train split" in dup[0]


def test_cleanlab_ranks_planted_label_errors_first():
    """On out-of-fold probabilities of three classes, the five photos whose labels were flipped are
    flagged, and cleanlab's label quality ranks them first."""
    from wardrobe.audit.label_errors import find_label_errors, label_quality

    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 40)
    probs = np.full((120, 3), 0.05)
    probs[np.arange(120), y] = 0.9
    probs += rng.uniform(0, 0.05, probs.shape)
    probs /= probs.sum(1, keepdims=True)
    flipped = np.array([3, 17, 45, 80, 101])
    given = y.copy()
    given[flipped] = (y[flipped] + 1) % 3
    mask = find_label_errors(probs, given)
    assert set(np.nonzero(mask)[0]) == set(flipped.tolist())
    assert set(np.argsort(label_quality(probs, given))[:5]) == set(flipped.tolist())
