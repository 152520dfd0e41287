"""Bad input on the command line gets one line on stderr and exit status 2, never a traceback."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import onnx
import pytest
from safetensors import safe_open
from safetensors.torch import load_file, save_file


def _cli(*args: str, timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "wardrobe.cli", *args], capture_output=True, text=True,
                          timeout=timeout)


def _one_line_error(r: subprocess.CompletedProcess, *needles: str) -> str:
    assert r.returncode == 2, (r.returncode, r.stderr[-2000:])
    assert "Traceback" not in r.stderr and r.stderr.startswith("error: ")
    line = " ".join(r.stderr.split())  # the console may wrap a long line
    for needle in needles:
        assert needle in line, line
    return line


def _edited_model(run: Path, dst: Path, edit) -> Path:
    src = run / "model.safetensors"
    with safe_open(str(src), framework="pt") as f:
        meta = json.loads(f.metadata()["wardrobe"])
    edit(meta)
    save_file(load_file(str(src)), str(dst), metadata={"wardrobe": json.dumps(meta)})
    return dst


@pytest.fixture(scope="module")
def photo(shapes_dir) -> str:
    return str(sorted((shapes_dir / "circle").glob("*.jpg"))[0])


def test_predict_output_naming_a_folder_or_an_existing_file(trained_run, photo, tmp_path):
    _one_line_error(_cli("predict", str(trained_run), photo, "-o", str(tmp_path)), "is a folder")
    out = tmp_path / "labels.csv"
    assert _cli("predict", str(trained_run), photo, "-o", str(out)).returncode == 0
    first = out.read_text()
    _one_line_error(_cli("predict", str(trained_run), photo, "-o", str(out)), "already exists", "--overwrite")
    assert out.read_text() == first
    assert _cli("predict", str(trained_run), photo, "-o", str(out), "--overwrite").returncode == 0


def test_a_class_list_that_does_not_match_the_weights(trained_run, photo, tmp_path):
    bad = _edited_model(trained_run, tmp_path / "extra-class.safetensors",
                        lambda m: m.update(classes=m["classes"] + ["hat"]))
    _one_line_error(_cli("predict", str(bad), photo), "is (3, 1904), expected (4, 1904)", "4 classes")
    r = _cli("serve", str(bad), "--port", "1")
    _one_line_error(r, "do not match")
    assert "serving" not in r.stdout + r.stderr  # the model is checked before anything is announced
    # an exported file whose class list was edited
    onnx_path = tmp_path / "m.onnx"
    assert _cli("export", str(trained_run), "-o", str(onnx_path)).returncode == 0
    proto = onnx.load(str(onnx_path))
    for p in proto.metadata_props:
        if p.key == "wardrobe.classes":
            p.value = json.dumps(["a", "b", "c", "d"])
    onnx.save(proto, str(onnx_path))
    _one_line_error(_cli("predict", str(onnx_path), photo), "class list (4 names) does not match", "3 outputs")


def test_a_format_version_stored_as_a_string(trained_run, photo, tmp_path):
    bad = _edited_model(trained_run, tmp_path / "v.safetensors", lambda m: m.update(format_version="1"))
    _one_line_error(_cli("predict", str(bad), photo), "format_version '1' is not a whole number")


def test_serve_with_a_missing_model_announces_nothing(tmp_path):
    r = _cli("serve", str(tmp_path / "nothing"), "--port", "1")
    _one_line_error(r, "not found")
    assert "serving" not in r.stdout + r.stderr
