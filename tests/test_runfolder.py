"""Run folders: no planted checkpoint is ever unpickled, a retrain saves its own weights, a run
folder is replaced only with --overwrite, and an interrupted or failed run leaves OUT as it was."""

from __future__ import annotations

import pathlib
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import torch
from conftest import interrupt_at_second_epoch, make_folder_dataset
from safetensors.torch import load_file

import wardrobe
from wardrobe.errors import WardrobeError

TINY = dict(mode="scratch", model="simple_cnn", epochs=1, image_size=64, batch_size=8, workers=0, val_ratio=0.34,
            show_progress=False)
SRC = Path(__file__).resolve().parents[1] / "src" / "wardrobe"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_folder_dataset(tmp_path_factory.mktemp("tiny"), per_class=6, size=64)


class Planted:
    """A pickle that, when loaded, creates a file: proof that loading it ran code."""

    def __init__(self, proof: Path):
        self.proof = proof

    def __reduce__(self):
        return (pathlib.Path.touch, (self.proof,))


def _plant(path: Path, proof: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": Planted(proof), "epoch": 0}, path)


class _Crash(L.Callback):
    def on_train_epoch_start(self, trainer, module):
        raise RuntimeError("a bug in the middle of training")


def _weights(run: Path) -> dict:
    return load_file(run / "model.safetensors")


def test_no_source_file_unpickles_with_weights_only_false():
    offenders = [str(p) for p in SRC.rglob("*.py")
                 if "weights_only=False" in p.read_text() or "pickle.load" in p.read_text()]
    assert offenders == []


def test_a_planted_best_checkpoint_never_runs_and_the_new_model_is_saved(tiny, tmp_path):
    out, proof = tmp_path / "run", tmp_path / "code-ran"
    _plant(out / "checkpoints" / "best.ckpt", proof)
    with pytest.raises(WardrobeError, match="--overwrite"):
        wardrobe.train(tiny, out, **TINY)
    res = wardrobe.train(tiny, out, overwrite=True, **TINY)
    assert not proof.exists()
    # the model file holds this run's best checkpoint, not the planted file's
    ckpt = torch.load(out / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=True)["state_dict"]
    for name, t in _weights(res.out).items():
        assert torch.equal(t, ckpt[f"model.{name}"]), name
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]


def test_a_retrain_saves_its_own_weights_not_the_earlier_runs(tiny, tmp_path):
    out = tmp_path / "run"
    wardrobe.train(tiny, out, seed=0, **TINY)
    first = _weights(out)
    second = wardrobe.train(tiny, out, seed=1, lr=3e-3, overwrite=True, **TINY)
    now = _weights(out)
    assert any(not torch.equal(first[k], now[k]) for k in first)
    assert second.config["fit"]["seed"] == 1 and second.config["fit"]["lr"] == 3e-3
    ckpt = torch.load(out / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=True)["state_dict"]
    assert all(torch.equal(t, ckpt[f"model.{k}"]) for k, t in now.items())


def test_an_existing_run_is_refused_without_overwrite_and_kept_whole(tiny, tmp_path):
    out = tmp_path / "run"
    wardrobe.train(tiny, out, **TINY)
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    with pytest.raises(WardrobeError, match="already holds a model; pass --overwrite"):
        wardrobe.train(tiny, out, **TINY)
    with pytest.raises(WardrobeError, match="already holds a model"):
        wardrobe.train(tiny, out, mode="probe", workers=0, val_ratio=0.34, show_progress=False)
    # an overwrite that is interrupted, then one that crashes: OUT still holds exactly the old run
    with pytest.raises(WardrobeError, match="--resume"):
        wardrobe.train(tiny, out, overwrite=True, extra_callbacks=[interrupt_at_second_epoch()], **{**TINY, "epochs": 2})
    assert {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert (tmp_path / "run.partial" / "checkpoints" / "last.ckpt").is_file()
    with pytest.raises(WardrobeError, match="interrupted run of it is in"):
        wardrobe.train(tiny, out, overwrite=False, resume=False, **TINY)
    with pytest.raises(RuntimeError, match="a bug"):
        wardrobe.train(tiny, out, overwrite=True, extra_callbacks=[_Crash()], **TINY)
    assert {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert not (tmp_path / "run.partial").exists()  # nothing resumable was left: no debris either
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_a_folder_of_other_files_is_never_replaced(tiny, tmp_path):
    out = tmp_path / "photos"
    out.mkdir()
    (out / "holiday.jpg").write_bytes(b"not mine to delete")
    for overwrite in (False, True):
        with pytest.raises(WardrobeError, match="not a wardrobe run"):
            wardrobe.train(tiny, out, overwrite=overwrite, **TINY)
    assert (out / "holiday.jpg").read_bytes() == b"not mine to delete"


def test_resume_refuses_a_planted_or_corrupt_last_checkpoint_in_one_line(tiny, tmp_path):
    out, proof = tmp_path / "run", tmp_path / "code-ran"
    with pytest.raises(WardrobeError, match="--resume"):
        wardrobe.train(tiny, out, extra_callbacks=[interrupt_at_second_epoch()], **{**TINY, "epochs": 2})
    last = tmp_path / "run.partial" / "checkpoints" / "last.ckpt"
    _plant(last, proof)
    with pytest.raises(WardrobeError, match="refused: it holds Python objects") as err:
        wardrobe.train(tiny, out, resume=True, **{**TINY, "epochs": 2})
    assert "\n" not in str(err.value) and not proof.exists()
    last.write_bytes(b"\x00garbage" * 100)
    with pytest.raises(WardrobeError, match="not a readable checkpoint"):
        wardrobe.train(tiny, out, resume=True, **{**TINY, "epochs": 2})
    # through the CLI: one line on stderr, exit 2, no traceback
    r = subprocess.run([sys.executable, "-m", "wardrobe.cli", "train", str(tiny), "--out", str(out), "--mode",
                        "scratch", "--model", "simple_cnn", "--epochs", "2", "--image-size", "64", "--workers", "0",
                        "--resume"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "Traceback" not in r.stderr and "not a readable checkpoint" in r.stderr
    # a finished run's own checkpoint, replaced by a planted one, is refused the same way
    _plant(tmp_path / "done" / "checkpoints" / "last.ckpt", proof)
    (tmp_path / "done" / "config.json").write_text("{}")
    with pytest.raises(WardrobeError, match="refused"):
        wardrobe.train(tiny, tmp_path / "done", resume=True, **{**TINY, "epochs": 2})
    assert not proof.exists()
