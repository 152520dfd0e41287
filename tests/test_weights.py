"""Pretrained weights from a file or a local model cache, for air-gapped machines: the weight files
are made here from random timm networks (no download), loaded with --weights, and compared tensor
by tensor; a fake Hugging Face cache stands in for one copied in."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import pytest
import timm
import torch
from conftest import make_folder_dataset
from safetensors.torch import save_file

import wardrobe
from wardrobe.errors import WardrobeError
from wardrobe.models.registry import create_backbone, model_catalogue as wardrobe_models

ARCH = "mobilenetv2_050"  # 2 M parameters: small enough to make and load in a test


@pytest.fixture(scope="module")
def state():
    torch.manual_seed(7)
    net = timm.create_model(ARCH, pretrained=False)
    return {k: v.contiguous() for k, v in net.state_dict().items()}


@pytest.fixture(scope="module")
def files(tmp_path_factory, state):
    d = tmp_path_factory.mktemp("weights")
    save_file(state, str(d / "w.safetensors"))
    torch.save(state, d / "w.pth")
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, d / "ckpt.pt")  # a DDP checkpoint
    hub = d / "hub-folder"
    hub.mkdir()
    save_file(state, str(hub / "model.safetensors"))
    (hub / "config.json").write_text(json.dumps({"architecture": ARCH, "pretrained_cfg": {"mean": [0.5] * 3,
                                                                                          "std": [0.5] * 3}}))
    return d


def _same_backbone(bb, state) -> bool:
    own = bb.model.state_dict()
    return all(torch.equal(own[k], state[k]) for k in own) and not any(k.startswith("classifier") for k in own)


@pytest.mark.parametrize("name", ["w.safetensors", "w.pth", "ckpt.pt", "hub-folder"])
def test_weights_from_a_file_or_hub_folder(files, state, name):
    bb = create_backbone(ARCH, weights=files / name)
    assert _same_backbone(bb, state)
    assert bb.weights.startswith("file:") and "@sha256:" in bb.weights
    if name == "hub-folder":
        assert bb.preprocess.mean == (0.5, 0.5, 0.5)  # the folder's pretrained_cfg


def test_bad_weight_files_are_one_line_and_never_run(files, tmp_path):
    class Planted:
        def __reduce__(self):
            return (pathlib.Path.touch, (tmp_path / "code-ran",))

    torch.save({"conv_stem.weight": Planted()}, tmp_path / "evil.pth")
    with pytest.raises(WardrobeError, match="refused: it holds Python objects"):
        create_backbone(ARCH, weights=tmp_path / "evil.pth")
    assert not (tmp_path / "code-ran").exists()
    with pytest.raises(WardrobeError, match=r"does not fit .*missing.*first: conv1.weight"):
        create_backbone("resnet18", weights=files / "w.safetensors")  # another architecture's weights
    with pytest.raises(WardrobeError, match="no such file or folder"):
        create_backbone(ARCH, weights=tmp_path / "nothing.safetensors")
    (tmp_path / "junk.bin").write_bytes(b"\x00" * 64)
    with pytest.raises(WardrobeError, match="not a readable weights file"):
        create_backbone(ARCH, weights=tmp_path / "junk.bin")


def test_a_copied_in_hugging_face_cache_works_offline(state, tmp_path):
    home = tmp_path / "hf"
    hub_id = timm.get_pretrained_cfg(ARCH).hf_hub_id
    repo = home / "hub" / ("models--" + hub_id.replace("/", "--"))
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0123abcd")
    (repo / "snapshots" / "0123abcd").mkdir(parents=True)
    save_file(state, str(repo / "snapshots" / "0123abcd" / "model.safetensors"))
    torch.save(state, tmp_path / "ref.pt")
    code = ("import torch; from wardrobe.models.registry import create_backbone, model_catalogue; "
            f"bb = create_backbone('{ARCH}'); ref = torch.load(r'{tmp_path / 'ref.pt'}', weights_only=True); "
            "print(bb.weights, all(torch.equal(v, ref[k]) for k, v in bb.model.state_dict().items()))")
    env = dict(os.environ, HF_HOME=str(home), HF_HUB_OFFLINE="1")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.stdout.split() == [f"{hub_id}@0123abcd", "True"], out.stderr[-2000:]


def test_every_mode_takes_weights_and_records_their_source(files, state, tmp_path):
    data = make_folder_dataset(tmp_path / "photos", per_class=6, size=64)
    common = dict(model=ARCH, weights=str(files / "w.safetensors"), workers=0, val_ratio=0.34, show_progress=False)
    probe = wardrobe.train(data, tmp_path / "probe", use_cache=False, **common)
    tuned = wardrobe.train(data, tmp_path / "tuned", mode="finetune", epochs=1, batch_size=8, image_size=64,
                           trainable="head", **common)
    for run in (probe, tuned):
        assert run.config["weights"].startswith("file:w.safetensors@sha256:")
        meta = wardrobe.Classifier.load(run.out).meta
        assert meta["weights"] == run.config["weights"]
    cv = wardrobe.cross_validate(data, tmp_path / "cv", folds=2, report=False, **common)
    assert len(cv["fold_metrics"]) == 2
    rows = {r["name"]: r for r in wardrobe_models()}
    assert rows["resnet18"]["from_a_file"] == "--model resnet18 --weights FILE"
    assert rows["resnet18"]["pretrained"] in ("hub when online",) or rows["resnet18"]["pretrained"].startswith("local")
    cli = subprocess.run([sys.executable, "-m", "wardrobe.cli", "train", str(data), "--out", str(tmp_path / "cli"),
                          "--model", ARCH, "--weights", str(tmp_path / "missing.pth"), "--workers", "0"],
                         capture_output=True, text=True, timeout=120)
    assert cli.returncode == 2 and "no such file or folder" in cli.stderr and "Traceback" not in cli.stderr
