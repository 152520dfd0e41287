"""Multi-level embeddings (models/levels.py) and the probe that uses them by default."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from typer.testing import CliRunner

import wardrobe
from wardrobe.cli import app
from wardrobe.errors import WardrobeError
from wardrobe.inference import Classifier
from wardrobe.models import create_backbone
from wardrobe.models.heads import set_head
from wardrobe.models.levels import supports_levels, use_levels
from wardrobe.models.modelfile import load_model
from wardrobe.models.stages import trainable_stages
from wardrobe.training.frozen import forward_rest, make_prefix
from wardrobe.training.probe import fit_linear_probe

runner = CliRunner()


def test_levels_embedding_is_final_plus_stage_means():
    torch.manual_seed(0)
    plain = create_backbone("efficientnet_lite0", pretrained=False).model.eval()
    levels = create_backbone("efficientnet_lite0", pretrained=False).model.eval()
    levels.load_state_dict(plain.state_dict())
    assert supports_levels(plain)
    use_levels(levels, 3)
    assert levels.num_features == 1280 + 112 + 192 + 320  # Lite0's last three stages
    stage_means = []
    hooks = [plain.blocks[i].register_forward_hook(lambda m, i_, o: stage_means.append(o.mean((2, 3))))
             for i in (4, 5, 6)]
    x = torch.rand(2, 3, 96, 96)
    with torch.no_grad():
        expected = torch.cat([plain(x), *stage_means], 1)
        got = levels(x)
    for h in hooks:
        h.remove()
    assert got.shape == (2, levels.num_features)
    assert torch.allclose(got, expected, atol=1e-5)
    with pytest.raises(ValueError):
        use_levels(levels, 3)  # twice would double-count


def test_levels_refused_where_the_network_has_no_stages():
    net = create_backbone("simple_cnn", pretrained=False).model
    assert not supports_levels(net)
    with pytest.raises(WardrobeError, match="EfficientNet"):
        use_levels(net, 2)
    assert use_levels(net, 0) is net


def test_default_probe_uses_levels_and_the_model_file_rebuilds_them(trained_run, shapes_dir):
    model, meta = load_model(trained_run)
    assert meta["levels"] == 3 and model.num_features == 1280 + 112 + 192 + 320  # Lite1's stages are Lite0's
    clf = Classifier.load(trained_run, runtime="torch")
    onnx = Classifier.load(trained_run, runtime="onnx")
    photos = sorted(shapes_dir.rglob("*.jpg"))[:6]
    p_torch, _ = clf.predict_proba(photos, workers=0, show_progress=False)
    p_onnx, _ = onnx.predict_proba(photos, workers=0, show_progress=False)
    assert np.allclose(p_torch, p_onnx, atol=1e-4)
    # the unknown-photo bank holds the same multi-level embeddings the head sees
    assert clf.bank is not None and clf.bank.shape[1] == model.num_features


def test_levels_zero_is_the_plain_embedding_and_is_cached_apart(shapes_dir, tmp_path):
    res = wardrobe.train(shapes_dir, tmp_path / "plain", val_ratio=0.25, workers=0, show_progress=False, levels=0)
    emb = res.metrics["timings"]["embeddings"]
    assert emb["extracted"] == 36  # the multi-level embeddings of the shared run are not reused
    assert "levels" not in wardrobe.models.modelfile.read_meta(res.model_path)
    assert load_model(res.model_path)[0].num_features == 1280


def test_damaged_levels_and_misplaced_flag_are_one_line_errors(trained_run, tmp_path, shapes_dir):
    path = trained_run / "model.safetensors"
    with safe_open(str(path), framework="pt") as f:
        meta = json.loads(f.metadata()["wardrobe"])
        state = {k: f.get_tensor(k) for k in f.keys()}
    bad = tmp_path / "bad.safetensors"
    save_file(state, str(bad), metadata={"wardrobe": json.dumps({**meta, "levels": "three"})})
    with pytest.raises(WardrobeError, match="levels"):
        load_model(bad)
    r = runner.invoke(app, ["train", str(shapes_dir), "--out", str(tmp_path / "ft"), "--mode", "scratch",
                            "--levels", "2", "--epochs", "1"])
    # main() prints a WardrobeError as one line; the runner shows it as the exception it catches
    assert isinstance(r.exception, WardrobeError) and "--levels taps a pretrained network" in str(r.exception)


def test_c_search_stops_once_validation_loss_rises():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 20))
    y = (x[:, 0] + 0.8 * rng.normal(size=300) > 0).astype(int)
    cs = (0.001, 0.01, 0.1, 1.0, 10.0, 100.0)
    _, _, search = fit_linear_probe(x[:200], y[:200], x[200:], y[200:], 2, cs=cs)
    losses = [h["val_log_loss"] for h in search["search"]]
    assert search["C"] == search["search"][int(np.argmin(losses))]["C"]
    assert len(losses) < len(cs) and losses[-1] > min(losses)  # stopped one step past the minimum


def test_fast_path_prefix_stops_before_the_first_tapped_stage():
    model = set_head(use_levels(create_backbone("efficientnet_lite0", pretrained=False).model, 5), 3, "linear").eval()
    # last:5 freezes the stem and three block stages, but the fifth-last stage is tapped: the prefix
    # in ONNX Runtime must end before it, or its pooled output would be missing
    prefix = make_prefix(model, trainable_stages(model, "last:5"))
    assert prefix.k == 2
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(model(x), forward_rest(model, prefix(x), prefix.k), atol=1e-4)


def test_best_preset_fine_tunes_with_levels_and_the_model_file_rebuilds_them(shapes_dir, tmp_path):
    res = wardrobe.train(shapes_dir, tmp_path / "ft", preset="best", model="efficientnet_lite0", epochs=1,
                         image_size=64, train_size=48, batch_size=8, workers=0, val_ratio=0.25, show_progress=False)
    model, meta = load_model(res.out)
    # the preset leaves levels to the network: the probe's three where it has the stages
    assert meta["levels"] == 3 and model.num_features == 1280 + 112 + 192 + 320
    assert json.loads((res.out / "config.json").read_text())["fit"]["levels"] == 3
    photos = sorted(shapes_dir.rglob("*.jpg"))[:4]
    p_torch, _ = Classifier.load(res.out, runtime="torch").predict_proba(photos, workers=0, show_progress=False)
    p_onnx, _ = Classifier.load(res.out, runtime="onnx").predict_proba(photos, workers=0, show_progress=False)
    assert np.allclose(p_torch, p_onnx, atol=1e-4)
