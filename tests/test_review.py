"""The review queue: corrections.csv (append-only, synced, undo, two reviewers), its web API, and the
page in headless Chromium surviving a killed server."""

from __future__ import annotations

import csv
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import shape_image
from fastapi.testclient import TestClient
from test_serve import CHROMIUM, _browser_skip_reason

from wardrobe.data.corrections import COLUMNS, CorrectionLog, Decision, human_labels, read_decisions
from wardrobe.errors import WardrobeError
from wardrobe.inference.review import create_review_app

CLASSES = ["circle", "square", "triangle"]


def make_queue(folder: Path, n: int = 12) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        kind = CLASSES[i % 3]
        p = folder / "photos" / f"{kind}_{i:02d}.jpg"
        p.parent.mkdir(exist_ok=True)
        shape_image(kind, 500 + i, size=96).save(p, quality=90)
        others = [c for c in CLASSES if c != kind]
        rows.append([str(p), kind, f"{0.5 + i / 100:.6f}", kind, others[0], "0.2", others[1], "0.1", "0.9", "", ""])
    with (folder / "review.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label", "prob", "model_label", "label_2", "prob_2", "label_3", "prob_3", "threshold",
                    "unknown_score", "error"])
        w.writerows(rows)
    (folder / "summary.json").write_text('{"classes": ["circle", "square", "triangle"]}')
    return folder


def _d(id, path, action="accept", label="circle", reviewer="a", undoes=""):
    return Decision(id, "", reviewer, path, action, label, "circle", undoes)


def test_log_writes_each_decision_once_and_replays_undo(tmp_path):
    log = CorrectionLog(tmp_path / "corrections.csv")
    assert log.add(_d("id-00001", "x.jpg")) == (True, "")
    assert log.add(_d("id-00001", "x.jpg")) == (False, "duplicate")  # a retried request
    assert log.add(_d("id-00002", "x.jpg", reviewer="b")) == (False, "decided by another reviewer")
    assert log.add(_d("id-00003", "y.jpg", "relabel", "square"))[0]
    assert log.add(_d("id-00004", "", "undo", "", undoes="id-00003"))[0]
    assert log.add(_d("id-00005", "", "undo", "", undoes="id-00003")) == (False, "nothing to undo")
    assert log.add(_d("id-00006", "z.jpg", "unknown", "unknown"))[0]
    assert human_labels(tmp_path / "corrections.csv") == {"x.jpg": "circle", "z.jpg": "unknown"}
    rows = list(csv.reader((tmp_path / "corrections.csv").open()))
    assert rows[0] == COLUMNS and [r[0] for r in rows[1:]] == ["id-00001", "id-00003", "id-00004", "id-00006"]
    # a server killed mid-write leaves half a line: the next start drops it and appends after it
    with (tmp_path / "corrections.csv").open("a") as f:
        f.write("id-00007,2026,a,w.jpg,acc")
    again = CorrectionLog(tmp_path / "corrections.csv")
    assert again.add(_d("id-00008", "w.jpg"))[0]
    assert [d.id for d in read_decisions(tmp_path / "corrections.csv")][-1] == "id-00008"
    (tmp_path / "other.csv").write_text("a,b\n1,2\n")
    with pytest.raises(WardrobeError, match="not a wardrobe corrections file"):
        read_decisions(tmp_path / "other.csv")


def test_two_reviewers_at_once_never_lose_or_duplicate(tmp_path):
    log = CorrectionLog(tmp_path / "corrections.csv")
    results = {"a": [], "b": []}

    def work(who):
        for i in range(40):
            # both reviewers race for the same 40 photos, each decision sent twice (a retry)
            d = _d(f"{who}-{i:04d}-x", f"p{i}.jpg", reviewer=who)
            results[who].append(log.add(d)[0])
            log.add(_d(f"{who}-{i:04d}-x", f"p{i}.jpg", reviewer=who))

    threads = [threading.Thread(target=work, args=(w,)) for w in "ab"]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    rows = read_decisions(tmp_path / "corrections.csv")
    assert len(rows) == sum(results["a"]) + sum(results["b"]) == 40  # each photo decided exactly once
    assert len({r.path for r in rows}) == 40 and len({r.id for r in rows}) == 40


def test_api_serves_queue_photos_by_row_only(tmp_path):
    q = make_queue(tmp_path / "q", n=4)
    with TestClient(create_review_app(q)) as c:
        snap = c.get("/api/queue").json()
        assert snap["total"] == 4 and snap["decided"] == 0 and snap["classes"] == CLASSES
        assert c.get("/api/photo/0").headers["content-type"] == "image/jpeg"
        assert c.get("/api/photo/9").status_code == 404
        assert c.get("/api/photo/..%2F..%2Fetc%2Fpasswd").status_code in (404, 422)
        r = c.post("/api/decide", json={"id": "abcdefgh1", "reviewer": "t", "index": 1, "action": "relabel",
                                        "label": "circle"}).json()
        assert r["written"] and r["decided"] == 1
        bad = c.post("/api/decide", json={"id": "abcdefgh2", "reviewer": "t", "index": 1, "action": "relabel",
                                          "label": "hat"})
        assert bad.status_code == 422
        assert c.post("/api/decide", json={"id": "abcdefgh3", "reviewer": "t", "index": 1, "action": "eat"}).status_code == 422
        assert c.get("/api/explain/0").status_code == 404  # no model given
    assert human_labels(q / "corrections.csv") == {str(q / "photos" / "square_01.jpg"): "circle"}


def _free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def _start(folder: Path, port: int) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "wardrobe.cli", "review", str(folder), "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    t0 = time.monotonic()
    while time.monotonic() - t0 < 60:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/queue", timeout=2)
            return proc
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("wardrobe review did not start")


@pytest.mark.skipif(_browser_skip_reason() is not None, reason=str(_browser_skip_reason()))
def test_keyboard_review_survives_a_killed_server(tmp_path):
    from playwright.sync_api import sync_playwright

    q = make_queue(tmp_path / "q", n=12)
    port = _free_port()
    url = f"http://127.0.0.1:{port}/"
    proc = _start(q, port)

    def press(page, key, decided=None):
        page.keyboard.press(key)
        page.wait_for_function("document.body.dataset.busy === '0'")
        if decided is not None:
            assert page.locator("#progress").inner_text().startswith(f"{decided} of"), (key, decided)

    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--headless", "--disable-gpu"])
            page = browser.new_page()
            page.goto(url)
            page.wait_for_function("document.getElementById('progress').textContent.includes('of 12')")
            press(page, "Enter", 1)        # photo 0: accept circle
            press(page, "2", 2)            # photo 1: its 2nd label
            press(page, "u", 3)            # photo 2: unknown
            press(page, "s", 3)            # photo 3: skip (not counted as decided)
            press(page, "a", 4)            # photo 4: accept
            page.keyboard.press("l")       # photo 5: another label, chosen from the list
            page.wait_for_selector(".card.focus select")
            page.keyboard.press("ArrowDown")
            press(page, "Enter", 5)
            press(page, "z", 4)            # undo photo 5's label
            press(page, "Enter", 5)        # photo 5: accept instead
            press(page, "Enter", 6)        # photo 6
            press(page, "Enter", 7)        # photo 7
            proc.send_signal(signal.SIGKILL)  # the server dies; nothing confirmed may be lost
            proc.wait(timeout=10)
            proc = _start(q, port)
            page.reload()
            page.wait_for_function("document.getElementById('progress').textContent.startsWith('7 of 12')")
            page.wait_for_function("document.body.dataset.busy === '0'")
            assert page.locator(".card.focus .name").inner_text() == "circle_03.jpg"  # the skipped one is open
            press(page, "Enter", 8)         # photo 3 decided now
            press(page, "u", 9)             # photo 8
            press(page, "Enter", 10)        # photo 9
            press(page, "Enter", 11)        # photo 10
            progress = page.locator("#progress").inner_text()
            browser.close()
    finally:
        proc.kill()
    rows = read_decisions(q / "corrections.csv")
    actions = [r.action for r in rows]
    # exactly the 14 key presses that make a decision: 12 decisions, a skip and an undo
    assert len(rows) == 14 and len({r.id for r in rows}) == 14, actions
    assert actions.count("undo") == 1 and actions.count("skip") == 1 and actions.count("unknown") == 2
    labels = human_labels(q / "corrections.csv")
    assert len(labels) == 11 and progress.startswith("11 of 12")
    photo = lambda i: str(next(p for p in (q / "photos").iterdir() if p.name.endswith(f"_{i:02d}.jpg")))  # noqa: E731
    assert labels[photo(0)] == "circle" and labels[photo(1)] == "circle" and labels[photo(2)] == "unknown"
    assert labels[photo(5)] == "triangle"  # the undone relabel is gone; the accept stands
    assert os.path.getsize(q / "corrections.csv") > 0


def test_audit_queue_review_and_corrections_retrain(tmp_path):
    """The loop: the audit queues suspected label errors, a reviewer fixes them, training applies the fixes."""
    from typer.testing import CliRunner

    from wardrobe.audit.run import AuditOptions, audit
    from wardrobe.cli import app
    from wardrobe.data import load_dataset

    d = tmp_path / "imgs"
    d.mkdir()
    rows = []
    for k, kind in enumerate(CLASSES):
        for i in range(12):
            shape_image(kind, seed=1000 * k + i).save(d / f"{kind}_{i}.jpg", quality=90)
            rows.append((f"{kind}_{i}.jpg", "square" if kind == "circle" and i < 2 else kind))
    with (d / "m.csv").open("w", newline="") as f:
        csv.writer(f).writerows([("image", "label"), *rows])
    extra = tmp_path / "new" / "triangle_new.jpg"  # a catalogue photo, reviewed, not in the data yet
    extra.parent.mkdir()
    shape_image("triangle", seed=99).save(extra, quality=90)
    q = tmp_path / "queue"
    audit(d / "m.csv", tmp_path / "out", AuditOptions(embeddings=True, workers=0, show_progress=False, folds=4),
          queue=q)
    queue = list(csv.DictReader((q / "review.csv").open()))
    first = {Path(r["path"]).name: r for r in queue[:2]}
    assert set(first) == {"circle_0.jpg", "circle_1.jpg"} and all(r["label_2"] == "circle" for r in first.values())
    with TestClient(create_review_app(q)) as c:
        names = [Path(it["path"]).name for it in c.get("/api/queue").json()["items"]]
        for name, action, label in (("circle_0.jpg", "relabel", "circle"), ("circle_1.jpg", "unknown", "")):
            r = c.post("/api/decide", json={"id": f"decision-{names.index(name)}", "reviewer": "t", "index": names.index(name),
                                            "action": action, "label": label})
            assert r.json()["written"]
    log = CorrectionLog(q / "corrections.csv")
    log.add(Decision("dec-extra-1", "", "t", str(extra), "relabel", "triangle", ""))
    fixed = {r.path.name: r for r in load_dataset(d / "m.csv", corrections=str(q / "corrections.csv")).records}
    assert fixed["circle_0.jpg"].label == "circle" and "circle_1.jpg" not in fixed
    assert fixed["triangle_new.jpg"].label == "triangle"
    kept = {r.path.name: r.label for r in load_dataset(d / "m.csv", corrections=str(q / "corrections.csv"),
                                                       keep_unknown=True).records}
    assert kept["circle_1.jpg"] == "unknown"
    out = tmp_path / "run"
    res = CliRunner().invoke(app, ["train", str(d / "m.csv"), "--out", str(out), "--corrections",
                                   str(q / "corrections.csv"), "--workers", "0"])
    assert res.exit_code == 0, res.output
    config = json.loads((out / "config.json").read_text())
    assert config["options"]["data"]["corrections"] == str(q / "corrections.csv")
    with pytest.raises(WardrobeError, match="never overwritten"):
        audit(d / "m.csv", tmp_path / "out3", AuditOptions(embeddings=True, workers=0, show_progress=False, folds=4),
              queue=q)
