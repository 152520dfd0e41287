"""Batch labelling: rows streamed batch by batch, CSV/JSONL/JSON, --resume after an interruption
(nothing lost, nothing twice), and Lightning's predict loop on two CPU processes with merged shards."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
from collections import Counter

import pytest
from conftest import SHAPES, shape_image
from typer.testing import CliRunner

from wardrobe.cli import app
from wardrobe.errors import WardrobeError
from wardrobe.inference.batch import label_photos
from wardrobe.inference.rows import RowWriter

runner = CliRunner()
FAST = dict(workers=0, show_progress=False)


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """21 photos (7 per shape) plus an unreadable one, in nested folders."""
    root = tmp_path_factory.mktemp("catalogue")
    for k, kind in enumerate(SHAPES):
        d = root / f"aisle{k}" / "shelf"
        d.mkdir(parents=True)
        for i in range(7):
            shape_image(kind, seed=5000 + 100 * k + i, size=72).save(d / f"{kind}_{i}.jpg", quality=90)
    (root / "aisle0" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    return root


def _csv_rows(path):
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _expected(path: str) -> str | None:
    name = os.path.basename(path)
    return None if name.startswith("broken") else name.split("_")[0]


def test_csv_rows_stream_out_batch_by_batch(trained_run, photos, tmp_path, monkeypatch):
    out = tmp_path / "labels.csv"
    seen_on_disk = []
    original = RowWriter.write

    def spy(self, rows):
        original(self, rows)
        # what a reader of the file sees right after each batch: rows already flushed
        seen_on_disk.append(len(out.read_text().splitlines()) - 1)

    monkeypatch.setattr(RowWriter, "write", spy)
    s = label_photos(trained_run, [photos], out, batch_size=5, **FAST)
    assert (s.written, s.failed, s.total) == (22, 1, 22)
    assert seen_on_disk == [5, 10, 15, 20, 22]  # written as each batch finished, not at the end
    rows = _csv_rows(out)
    assert list(rows[0]) == ["path", "label_1", "prob_1", "label_2", "prob_2", "label_3", "prob_3", "error"]
    assert len({r["path"] for r in rows}) == 22
    for r in rows:
        want = _expected(r["path"])
        if want is None:
            assert r["label_1"] == "" and r["error"]
        else:
            assert r["label_1"] == want and r["error"] == "" and float(r["prob_1"]) >= float(r["prob_2"])


def test_jsonl_and_json_formats(trained_run, photos, tmp_path):
    label_photos(trained_run, [photos], tmp_path / "a.jsonl", top_k=2, batch_size=8, **FAST)
    lines = [json.loads(l) for l in (tmp_path / "a.jsonl").read_text().splitlines()]
    assert len(lines) == 22 and all(len(l["top_k"]) in (0, 2) for l in lines)
    assert all(l["label"] == _expected(l["path"]) for l in lines)
    label_photos(trained_run, [photos], tmp_path / "a.json", fmt="json", batch_size=8, **FAST)
    arr = json.loads((tmp_path / "a.json").read_text())
    assert [a["path"] for a in arr] == [l["path"] for l in lines]


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_resume_after_a_limit_finishes_without_duplicates(trained_run, photos, tmp_path, fmt):
    out = tmp_path / f"labels.{fmt}"
    first = label_photos(trained_run, [photos], out, fmt=fmt, batch_size=4, limit=9, **FAST)
    assert first.written == 9
    head = out.read_text()
    second = label_photos(trained_run, [photos], out, fmt=fmt, batch_size=4, resume=True, **FAST)
    assert (second.skipped, second.written) == (9, 13)
    assert out.read_text().startswith(head)  # the first chunk's rows are kept as they were
    paths = ([r["path"] for r in _csv_rows(out)] if fmt == "csv"
             else [json.loads(l)["path"] for l in out.read_text().splitlines()])
    assert len(paths) == 22 and Counter(paths).most_common(1)[0][1] == 1
    again = label_photos(trained_run, [photos], out, fmt=fmt, resume=True, **FAST)
    assert again.written == 0 and again.skipped == 22


def test_resume_after_a_kill_mid_line(trained_run, photos, tmp_path):
    """A file cut off inside a row (the process killed mid-write): that row is redone, none doubled."""
    out = tmp_path / "labels.jsonl"
    label_photos(trained_run, [photos], out, batch_size=8, **FAST)
    full = out.read_bytes()
    out.write_bytes(full[: full.index(b"\n", len(full) // 2) + 25])  # 25 bytes into a row
    label_photos(trained_run, [photos], out, resume=True, **FAST)
    rows = [json.loads(l) for l in out.read_text().splitlines()]  # every line parses
    assert len(rows) == 22 and len({r["path"] for r in rows}) == 22
    assert all(r["label"] == _expected(r["path"]) for r in rows)


def test_resume_refuses_what_it_cannot_append_to(trained_run, photos, tmp_path):
    out = tmp_path / "labels.csv"
    label_photos(trained_run, [photos], out, top_k=2, limit=3, **FAST)
    with pytest.raises(WardrobeError, match="--top-k"):
        label_photos(trained_run, [photos], out, top_k=3, resume=True, **FAST)
    with pytest.raises(WardrobeError, match="jsonl"):
        (tmp_path / "x.json").write_text("[]")
        label_photos(trained_run, [photos], tmp_path / "x.json", resume=True, **FAST)
    with pytest.raises(WardrobeError, match="--output"):
        label_photos(trained_run, [photos], None, resume=True, **FAST)


def test_cli_predict_jsonl_resume_and_limit(trained_run, photos, tmp_path):
    out = tmp_path / "cli.jsonl"
    args = ["predict", str(trained_run), str(photos), "--output", str(out), "--workers", "0", "--batch-size", "4"]
    r1 = runner.invoke(app, [*args, "--limit", "6"])
    assert r1.exit_code == 0, r1.output
    r2 = runner.invoke(app, [*args, "--resume"])
    assert r2.exit_code == 0, r2.output
    assert "6 were already there" in r2.output
    paths = [json.loads(l)["path"] for l in out.read_text().splitlines()]
    assert len(paths) == len(set(paths)) == 22


def test_ddp_two_cpu_processes_merge_each_photo_once(trained_run, photos, tmp_path):
    """Lightning's predict loop on two CPU processes (gloo): each rank writes a shard, merged once."""
    out = tmp_path / "ddp.csv"
    env = dict(os.environ, WARDROBE_QUIET="1", PYTHONUNBUFFERED="1")
    # its own process group: if it hangs, rank 1 (launched by rank 0) is killed with it
    proc = subprocess.Popen([sys.executable, "-m", "wardrobe.cli", "predict", str(trained_run), str(photos),
                             "--output", str(out), "--batch-size", "3", "--workers", "0",
                             "--devices", "2", "--strategy", "ddp", "--accelerator", "cpu"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            start_new_session=True)
    try:
        _, stderr = proc.communicate(timeout=600)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail("two-process predict did not finish in 600 s")
    assert proc.returncode == 0, stderr[-3000:]
    rows = _csv_rows(out)
    assert len(rows) == len({r["path"] for r in rows}) == 22
    assert all(r["label_1"] == (_expected(r["path"]) or "") for r in rows)
    assert not (tmp_path / "ddp.csv.shards").exists()  # shards merged and removed
    # input order is kept across ranks: same order as the single-process run
    single = tmp_path / "single.csv"
    label_photos(trained_run, [photos], single, **FAST)
    assert [r["path"] for r in _csv_rows(single)] == [r["path"] for r in rows]
