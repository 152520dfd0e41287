"""The fast fine-tuning path (frozen stages in ONNX Runtime, frozen batch-norm, no loader worker on
2 cores), the degradation augmentation, balanced softmax and post-hoc logit adjustment."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from conftest import make_folder_dataset

import wardrobe
from wardrobe.models.heads import LogitsAndEmbedding, set_head
from wardrobe.models.modelfile import load_model
from wardrobe.models.registry import create_backbone
from wardrobe.models.stages import trainable_stages
from wardrobe.training.augment import ColorMatrixJitter, Degrade, hue_rotation, train_transform
from wardrobe.training.config import TRAIN_PRESETS
from wardrobe.training.finetune import predict_probs
from wardrobe.training.frozen import FinishedNetwork, FrozenPrefix, forward_rest, frozen_prefix_length, make_prefix
from wardrobe.training.knobs import Augment
from wardrobe.training.losses import make_loss
from wardrobe.training.posthoc import TAUS, adjustment, cross_fitted, fit_logit_adjustment
from wardrobe.transforms import Preprocess


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_folder_dataset(tmp_path_factory.mktemp("tiny"), per_class=6, size=64)


def _lite(trainable: str):
    model = set_head(create_backbone("efficientnet_lite0", pretrained=False).model, 3, "linear").eval()
    return model, trainable_stages(model, trainable)


def test_prefix_length_counts_the_frozen_leading_block_stages():
    model, active = _lite("last:5")  # stem, 7 block stages, head conv: stem + 3 block stages frozen
    assert frozen_prefix_length(model, active) == 3
    assert frozen_prefix_length(*_lite("all")) == -1  # the stem trains: nothing to split off
    assert frozen_prefix_length(*_lite("head")) == 7
    simple = create_backbone("simple_cnn", pretrained=False).model
    assert frozen_prefix_length(simple, []) == -1


@pytest.mark.parametrize("size", [64, 48])
def test_onnx_prefix_then_torch_rest_equals_the_whole_network(size):
    model, active = _lite("last:4")
    torch.manual_seed(0)
    for m in model.modules():  # non-trivial batch-norm statistics, so folding them is tested too
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    prefix = make_prefix(model, active)
    assert isinstance(prefix, FrozenPrefix) and prefix.k == frozen_prefix_length(model, active)
    x = torch.randn(4, 3, size, size)
    with torch.no_grad():
        whole = model(x)
        split = forward_rest(model, prefix(x), prefix.k)
    assert torch.allclose(whole, split, atol=1e-4), (whole - split).abs().max()
    assert make_prefix(model, active, "off") is None


def test_a_finished_network_scores_in_onnx_runtime_as_in_pytorch(monkeypatch):
    model, _ = _lite("last:4")
    net = LogitsAndEmbedding(model)
    x = torch.randn(5, 3, 64, 64)
    with torch.no_grad():
        logits, emb = net(x)
    fast = FinishedNetwork(net, 2)
    out = fast(x)
    assert fast.onnx is not None and (64, 64) in fast.onnx.sessions  # the run went through ONNX Runtime
    assert np.allclose(out[0], logits.numpy(), atol=1e-4) and np.allclose(out[1], emb.numpy(), atol=1e-4)
    plain = FinishedNetwork(net, 2, "off")
    assert plain.onnx is None and np.allclose(plain(x)[0], logits.numpy(), atol=1e-5)

    def broken(self, batch):
        raise RuntimeError("exporter says no")

    monkeypatch.setattr("wardrobe.models.runtime.OnnxModule.__call__", broken)
    fallback = FinishedNetwork(net, 2)
    assert np.allclose(fallback(x)[1], emb.numpy(), atol=1e-5) and fallback.onnx is None


def test_predict_probs_gives_probabilities_and_embeddings_for_every_photo():
    model, _ = _lite("last:4")
    ds = [(torch.randn(3, 64, 64), 0) for _ in range(70)]  # more than one batch of 64
    probs, emb = predict_probs(model, ds, 0)
    assert probs.shape == (70, 3) and np.allclose(probs.sum(1), 1, atol=1e-5)
    assert emb.shape == (70, model.num_features)
    with torch.no_grad():
        expected = torch.softmax(model(torch.stack([x for x, _ in ds[:4]])), 1).numpy()
    assert np.allclose(probs[:4], expected, atol=1e-4)


def test_fast_path_trains_and_matches_the_plain_path(tiny, tmp_path, monkeypatch):
    opts = dict(mode="finetune", model="efficientnet_lite0", epochs=1, image_size=64, batch_size=8, workers=0,
                val_ratio=0.34, show_progress=False, trainable="last:3", freeze_bn=True, lr=0.05,
                optimizer="sgd")  # SGD: a step is linear in the gradient, so rounding stays small (Adam divides it)
    fast = wardrobe.train(tiny, tmp_path / "fast", **opts)
    monkeypatch.setenv("WARDROBE_FAST_PATH", "off")
    plain = wardrobe.train(tiny, tmp_path / "plain", **opts)
    a = torch.nn.utils.parameters_to_vector(load_model(fast.out)[0].parameters())
    b = torch.nn.utils.parameters_to_vector(load_model(plain.out)[0].parameters())
    # The same seed, batches and arithmetic up to ONNX Runtime's rounding: the weights agree closely
    # (a broken prefix, e.g. the wrong stage count, would train a different function entirely).
    assert torch.allclose(a, b, atol=2e-3), (a - b).abs().max()
    assert json.loads((fast.out / "config.json").read_text())["fit"]["freeze_bn"] is True
    clf = wardrobe.Classifier.load(fast.out)  # a fine-tuned model carries its unknown detector and thresholds
    assert clf.unknown is not None and clf.bank.shape[0] == fast.metrics["counts"]["train"] and clf.meta["selection"]
    cal = json.loads((fast.out / "metrics.json").read_text())["calibration"]
    assert cal["nll_after"] <= cal["nll_before"] + 1e-9 and clf.temperature == pytest.approx(cal["temperature"])
    assert clf.meta["selection"]["temperature"] == pytest.approx(cal["temperature"])
    from wardrobe.inference.explain import Explainer  # a fine-tuned network explains like a probe

    photo = next(tiny.rglob("*.jpg"))
    heat = Explainer.load(fast.out).explain(photo)["heatmap"]
    assert heat.shape == (64, 64) and heat.max() > 0


def test_frozen_batch_norm_keeps_its_statistics(tiny, tmp_path):
    res = wardrobe.train(tiny, tmp_path / "run", mode="finetune", model="efficientnet_lite0", epochs=1, image_size=64,
                         batch_size=8, workers=0, val_ratio=0.34, show_progress=False, freeze_bn=True)
    start = create_backbone("efficientnet_lite0").model
    got = dict(load_model(res.out)[0].named_buffers())
    for name, buf in start.named_buffers():
        if name.endswith("running_mean"):
            assert torch.equal(got[name], buf), name


def test_frozen_depthwise_kernels_keep_their_values_while_the_rest_of_their_stages_trains(tiny, tmp_path):
    from wardrobe.models.stages import depthwise_convs

    opts = dict(mode="finetune", model="efficientnet_lite0", epochs=1, image_size=64, batch_size=8, workers=0,
                val_ratio=0.34, show_progress=False, trainable="last:3", lr=0.05, optimizer="sgd")
    res = wardrobe.train(tiny, tmp_path / "run", freeze_depthwise=True, **opts)
    start = dict(set_head(create_backbone("efficientnet_lite0").model, 3, "linear").named_parameters())
    model = load_model(res.out)[0]
    trained = dict(model.named_parameters())
    dw_ids = {id(m) for m in depthwise_convs(model)}
    dw = {n for n, m in model.named_modules() if id(m) in dw_ids}
    assert len(dw) == 16  # one per inverted-residual block of Lite0 (the stem's block included)
    for name in (f"{m}.weight" for m in dw):
        assert torch.equal(trained[name], start[name]), name  # in the trainable stages too
    moved = [n for n in trained
             if ".conv_pw" in n and n.startswith("blocks.6") and not torch.equal(trained[n], start[n])]
    assert moved, "the trainable stages' pointwise convolutions should have moved"
    assert json.loads((res.out / "config.json").read_text())["fit"]["freeze_depthwise"] is True


def test_layer_decay_gives_each_lower_stage_a_smaller_learning_rate():
    from wardrobe.models.stages import stage_modules
    from wardrobe.training.config import fit_config
    from wardrobe.training.module import ClassifierModule

    model, _ = _lite("last:5")
    plain = ClassifierModule(model, 3, fit_config(lr=1e-3, trainable="last:5")).backbone_groups(1e-3)
    assert len(plain) == 1 and plain[0]["lr"] == 1e-3
    groups = ClassifierModule(model, 3, fit_config(lr=1e-3, trainable="last:5", layer_decay=0.5)).backbone_groups(1e-3)
    stages = stage_modules(model)
    assert len(groups) == len(stages)  # one per stage, the classifier left to the head's group
    rates = {id(p): g["lr"] for g in groups for p in g["params"]}
    assert rates[id(next(stages[-1].parameters()))] == 1e-3  # the head convolution: the full rate
    assert rates[id(next(stages[-2].parameters()))] == 5e-4
    assert rates[id(next(stages[0].parameters()))] == pytest.approx(1e-3 * 0.5 ** (len(stages) - 1))
    assert sum(len(g["params"]) for g in groups) == len(plain[0]["params"])  # every parameter, once
    with pytest.raises(wardrobe.WardrobeError, match="--layer-decay"):
        fit_config(layer_decay=1.5)


def test_l2sp_pulls_the_backbone_towards_its_starting_weights_and_leaves_the_head_to_weight_decay(monkeypatch):
    from wardrobe.training.config import fit_config
    from wardrobe.training.module import ClassifierModule

    monkeypatch.setenv("WARDROBE_FAST_PATH", "off")  # no ONNX prefix: on_fit_start only lays the weights out
    model, _ = _lite("last:2")
    module = ClassifierModule(model, 3, fit_config(optimizer="adamw", scheduler="none", weight_decay=0.1, l2sp=2.0))
    module.on_fit_start()  # channels-last weights: the anchors follow them there, once
    conv = next(p for p in module.backbone_params if p.dim() == 4)
    anchor = module.anchors[id(conv)]
    assert anchor.is_contiguous(memory_format=torch.channels_last) and torch.equal(anchor, conv)
    opt = module.configure_optimizers()
    assert opt.param_groups[0]["weight_decay"] == 0.1 and opt.param_groups[1]["weight_decay"] == 0.0
    moving, still = module.backbone_params[-1], module.backbone_params[0]
    start_moving, start_still = moving.detach().clone(), still.detach().clone()
    with torch.no_grad():
        moving.add_(1.0)
        still.add_(1.0)
    moving.grad = torch.zeros_like(moving)  # a trainable weight this step; ``still`` has no gradient (frozen)
    module.on_before_optimizer_step(opt)
    lr = opt.param_groups[1]["lr"]
    assert torch.allclose(moving - start_moving, torch.full_like(moving, 1 - lr * 2.0))  # the gap shrank by lr x l2sp
    assert torch.allclose(still - start_still, torch.ones_like(still))  # frozen: not pulled back
    plain = ClassifierModule(model, 3, fit_config(optimizer="adamw", scheduler="none"))
    assert not plain.anchors and plain.configure_optimizers().param_groups[1]["weight_decay"] == 0.05
    with pytest.raises(wardrobe.WardrobeError, match="--l2sp"):
        fit_config(l2sp=-1.0)
    with pytest.raises(wardrobe.WardrobeError, match="--l2sp"):
        fit_config(mode="scratch", l2sp=1.0)


def test_adamw_on_a_cpu_is_the_fused_kernel():
    from wardrobe.training.config import fit_config
    from wardrobe.training.module import ClassifierModule

    model, _ = _lite("last:2")
    opt = ClassifierModule(model, 3, fit_config(optimizer="adamw", scheduler="none")).configure_optimizers()
    assert isinstance(opt, torch.optim.AdamW) and opt.defaults["fused"]


def test_degrade_changes_the_given_share_of_photos():
    x = torch.randint(0, 256, (3, 48, 48), dtype=torch.uint8)
    torch.manual_seed(0)
    assert all(torch.equal(Degrade(0.0)(x), x) for _ in range(20))
    changed = [not torch.equal(Degrade(1.0)(x), x) for _ in range(30)]
    assert all(changed)
    share = np.mean([not torch.equal(Degrade(0.25)(x), x) for _ in range(400)])
    assert 0.15 < share < 0.35
    pre = Preprocess(input_size=32, mean=(0, 0, 0), std=(1, 1, 1))
    assert any(isinstance(t, Degrade) for t in train_transform(Augment(degrade=0.3), pre).transforms)


def _fixed_jitter(monkeypatch, draws):
    """ColorMatrixJitter with its random draws replaced, in order: brightness, contrast, saturation
    factors, then the hue shift as a fraction of the circle."""
    values = iter(draws)

    class Draw:
        def uniform_(self, lo, hi):
            return torch.tensor(next(values))

    monkeypatch.setattr(torch, "empty", lambda *a, **k: Draw())
    return ColorMatrixJitter(0.1, 0.1, 0.1, 0.025)


@pytest.mark.parametrize("name, draws", [("brightness", [1.1, 1, 1, 0]), ("contrast", [1, 0.9, 1, 0]),
                                         ("saturation", [1, 1, 1.1, 0]), ("saturation", [1, 1, 0.9, 0])])
def test_colour_matrix_jitter_matches_torchvision_one_adjustment_at_a_time(monkeypatch, name, draws):
    from torchvision.transforms.v2 import functional as TF
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (3, 40, 48), dtype=torch.uint8, generator=g)
    factor = {"brightness": draws[0], "contrast": draws[1], "saturation": draws[2]}[name]
    want = getattr(TF, f"adjust_{name}")(x, factor)
    got = _fixed_jitter(monkeypatch, draws)(x)
    assert got.dtype == torch.uint8 and got.shape == x.shape
    assert (got.int() - want.int()).abs().max() <= 1  # rounding only
    assert not torch.equal(got, x)


def test_colour_matrix_jitter_hue_rotates_colours_and_keeps_greys(monkeypatch):
    assert torch.allclose(hue_rotation(0.0), torch.eye(3))
    # a third of the circle sends red to green and green to blue, as a hue shift does
    third = hue_rotation(2 * np.pi / 3)
    assert torch.allclose(third @ torch.tensor([1.0, 0, 0]), torch.tensor([0.0, 1, 0]), atol=1e-6)
    assert torch.allclose(third @ torch.tensor([0.0, 1, 0]), torch.tensor([0.0, 0, 1]), atol=1e-6)
    grey = torch.full((3, 8, 8), 97, dtype=torch.uint8)
    assert torch.equal(_fixed_jitter(monkeypatch, [1, 1, 1, 0.025])(grey), grey)
    colour = torch.zeros(3, 8, 8, dtype=torch.uint8)
    colour[0], colour[1] = 200, 40
    shifted = _fixed_jitter(monkeypatch, [1, 1, 1, 0.025])(colour)
    # a positive shift moves an orange-red towards yellow: more green, less red, as HSV's would
    assert shifted[1].float().mean() > 40 and shifted[0].float().mean() < 200


def test_colour_jitter_in_training_is_the_one_matrix_kind_and_varies_photos():
    pre = Preprocess(input_size=32, mean=(0, 0, 0), std=(1, 1, 1))
    ops = train_transform(Augment(color_jitter=0.2), pre).transforms
    assert any(isinstance(t, ColorMatrixJitter) for t in ops)
    x = torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8)
    jitter = ColorMatrixJitter(0.2, 0.2, 0.2, 0.05)
    outs = [jitter(x) for _ in range(5)]
    assert all(o.dtype == torch.uint8 for o in outs)
    assert len({o.float().mean().item() for o in outs}) == 5
    assert all((o.int() - x.int()).abs().float().mean() < 40 for o in outs)


def test_balanced_softmax_is_cross_entropy_on_prior_shifted_logits():
    labels = np.array([0] * 8 + [1] * 2)
    loss = make_loss("balanced", labels, 2)
    logits = torch.tensor([[1.0, 0.5], [0.2, 0.3]])
    y = torch.tensor([1, 0])
    shifted = logits + torch.log(torch.tensor([0.8, 0.2]))
    assert torch.isclose(loss(logits, y), torch.nn.functional.cross_entropy(shifted, y))
    flat = make_loss("balanced", np.array([0, 1]), 2)
    assert torch.isclose(flat(logits, y), torch.nn.functional.cross_entropy(logits, y))


def _biased_towards_the_frequent_class(rng):
    """A model biased towards class 0 (frequent in training): rare class 1 loses its borderline photos."""
    y = np.array([0] * 300 + [1] * 30)
    margin = np.where(y == 1, rng.normal(0.3, 1.0, len(y)), rng.normal(-2.0, 1.0, len(y)))
    logits = np.stack([np.zeros(len(y)), margin - 1.5], 1)
    return np.exp(logits) / np.exp(logits).sum(1, keepdims=True), y


def test_logit_adjustment_helps_rare_classes_and_is_nothing_on_balanced_data():
    probs, y = _biased_towards_the_frequent_class(np.random.default_rng(0))
    tau, bias, search = fit_logit_adjustment(probs, y, np.array([900, 90]))
    assert tau > 0 and bias[1] > bias[0]
    by_tau = {s["tau"]: s["val_f1_macro"] for s in search}
    assert by_tau[tau] > by_tau[0.0]
    assert np.allclose(adjustment(np.array([50, 50, 50]), 1.0), 0)


def test_tau_grid_after_a_sampler_only_takes_back_tilt_it_never_adds_more():
    from wardrobe.training.posthoc import TAUS_AFTER_BALANCED, taus_for

    assert taus_for("ce") == taus_for("ce", "none") == TAUS
    assert taus_for("ce", "sqrt") == (0.0,)  # square-root sampling tilts enough: no search that adds more
    assert taus_for("ce", "root4") == (-0.25, 0.0)  # the excess over sqrt first: it wins ties
    assert taus_for("ce", "balanced") == (-0.5, -0.25, 0.0)
    assert taus_for("balanced", "root4") == TAUS_AFTER_BALANCED


def test_cross_fitted_run_grades_each_half_with_the_epoch_the_other_half_chose():
    from sklearn.model_selection import StratifiedKFold

    from wardrobe.training.posthoc import cross_fitted_run

    y = np.repeat([0, 1, 2], [20, 12, 8])
    half_a, half_b = StratifiedKFold(2, shuffle=True, random_state=0).split(np.zeros(len(y)), y)
    right, wrong = np.eye(3)[y] * 0.9 + 0.05, np.eye(3)[(y + 1) % 3] * 0.9 + 0.05
    first, second = wrong.copy(), wrong.copy()
    first[half_a[1]], second[half_b[1]] = right[half_a[1]], right[half_b[1]]  # each epoch right on one half
    counts = np.array([200, 120, 80])
    graded, chosen = cross_fitted_run([first, second], y, counts)
    # half a's photos get the epoch half b chose (the second), which is wrong on them, and back:
    # picking the epoch on the photos it grades would have read 50 %, not 0
    assert (graded.argmax(1) == y).mean() == 0.0
    assert sorted(e for e, _ in chosen) == [0, 1]
    graded, chosen = cross_fitted_run([wrong, right, right], y, counts)
    assert (graded.argmax(1) == y).all() and chosen == [(1, 0.0), (1, 0.0)]  # ties: the earlier epoch
    # one epoch: the same as the tau-only cross-fit
    probs = np.random.default_rng(0).dirichlet(np.ones(3), len(y))
    np.testing.assert_allclose(cross_fitted_run([probs], y, counts, TAUS)[0], cross_fitted(probs, y, counts)[0])


def test_cross_fitted_adjustment_grades_each_half_with_the_other_halfs_tau():
    rng = np.random.default_rng(1)
    probs, y = _biased_towards_the_frequent_class(rng)
    counts = np.array([900, 90])
    graded, taus = cross_fitted(probs, y, counts)
    assert len(taus) == 2 and all(t > 0 for t in taus)
    assert np.allclose(graded.sum(1), 1)
    if taus[0] == taus[1]:  # both halves agree: every photo gets that one tau's adjustment
        expect = np.log(probs) + adjustment(counts, taus[0])
        assert np.array_equal(graded.argmax(1), expect.argmax(1))
    # Pure noise: a tau picked on the graded photos themselves would read high; cross-fitting does not.
    noise = rng.dirichlet(np.ones(5), 200)
    yn = rng.integers(0, 5, 200)
    _, _, search = fit_logit_adjustment(noise, yn, np.array([400, 200, 100, 50, 25]))
    graded, _ = cross_fitted(noise, yn, np.array([400, 200, 100, 50, 25]))
    from sklearn.metrics import f1_score
    assert f1_score(yn, graded.argmax(1), average="macro") <= max(s["val_f1_macro"] for s in search)


def test_best_preset_is_the_fast_robust_recipe():
    best = TRAIN_PRESETS["best"]
    assert best.train_size < best.image_size and best.freeze_bn and best.logit_adjust and 0 < best.augment.degrade < 0.5
    assert best.max_minutes <= 30
    assert best.freeze_depthwise  # 14 % less wall time on top-10, no accuracy lost (session 26)
    assert best.ema == 0.998  # top-10 seeds 0 and 1 two photos up each, noise no worse on average (session 27)
    assert best.ema_long_tail == 0.995  # clothing-17 5-fold macro-F1 0.8159 against 0.8003 with 0.998 (session 28)
    # the mean of the second half's weights on every dataset: the best epoch cross-fitted lost on top-10
    # (session 23) and on clothing-17 (session 34)
    assert best.average_from == 0.5 and best.average_below_ratio is None
    assert best.levels is None  # multi-level head wherever the network has the stages
    assert best.resize == "squash"  # the whole garment in view (docs/benchmarks.md, session 17)
    assert best.sampler == "auto"  # square-root sampling on a long tail, none on clothing-top10 (session 20)
    assert best.adjust_min_ratio == 10  # session 23


def test_training_workers_default_to_none_on_two_cores(monkeypatch):
    from wardrobe import settings

    monkeypatch.setattr(settings.os, "cpu_count", lambda: 2)
    assert settings.default_workers(training=True) == 0 and settings.default_workers() == 2
    monkeypatch.setattr(settings.os, "cpu_count", lambda: 8)
    assert settings.default_workers(training=True) == 4


def test_bool_flags_from_the_command_line(tiny, tmp_path):
    from typer.testing import CliRunner

    from wardrobe.cli import app

    out = tmp_path / "cli"
    res = CliRunner().invoke(app, ["train", str(tiny), "--out", str(out), "--mode", "scratch", "--model", "simple_cnn",
                                   "--image-size", "64", "--epochs", "1", "--batch-size", "8", "--workers", "0",
                                   "--val-ratio", "0.34", "--freeze-bn", "--logit-adjust", "--degrade", "0.5",
                                   "--loss", "balanced", "--ema", "0.9"])
    assert res.exit_code == 0, res.output  # best.ckpt (the moving average) reloads with the balanced loss
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["fit"]["freeze_bn"] is True and cfg["fit"]["logit_adjust"] is True and cfg["fit"]["loss"] == "balanced"
    assert cfg["fit"]["augment"]["degrade"] == 0.5 and "tau" in cfg["logit_adjustment"]
    assert cfg["validation_figures"]["graded"] == "epoch and tau cross-fitted"  # never with its own choices
    assert len(cfg["validation_figures"]["halves"]) == 2
    metrics = json.loads((out / "metrics.json").read_text())  # one epoch: both gradings are the same
    assert cfg["validation_figures"]["kept_epoch"]["f1_macro"] == pytest.approx(metrics["f1_macro"], abs=1e-5)
    # balanced softmax has the prior built in: the search can only give part of it back
    assert [s["tau"] for s in cfg["logit_adjustment"]["search"]] == [0.0, -0.25, -0.5, -0.75, -1.0]


def test_head_init_probe_starts_the_head_from_the_logistic_regression(tiny, tmp_path):
    import lightning as L  # heavy: Lightning, for the callback that reads the starting head

    from wardrobe.models.heads import head_linear
    from wardrobe.training.embeddings import extract_embeddings

    seen = {}

    class StartingHead(L.Callback):
        def on_train_start(self, trainer, module):
            head = head_linear(module.model)
            seen["w"], seen["b"] = head.weight.detach().clone(), head.bias.detach().clone()

    res = wardrobe.train(tiny, tmp_path / "lpft", mode="finetune", model="efficientnet_lite0", epochs=1, image_size=64,
                         batch_size=8, workers=0, val_ratio=0.34, show_progress=False, head_init="probe",
                         extra_callbacks=[StartingHead()])
    # The starting head already classifies the pretrained network's embeddings of the photos (the
    # shapes are separable); a freshly initialised head would be at chance.
    bb = create_backbone("efficientnet_lite0")
    bb.preprocess = dataclasses.replace(bb.preprocess, input_size=64)
    photos = sorted(tiny.rglob("*.jpg"))
    x, _, _ = extract_embeddings(photos, bb, workers=0, show_progress=False)
    y = np.array([sorted(p.parent.name for p in photos).index(p.parent.name) // 6 for p in photos])
    starting = (torch.from_numpy(x) @ seen["w"].T + seen["b"]).argmax(1).numpy()
    assert (starting == y).mean() >= 0.9
    assert json.loads((res.out / "config.json").read_text())["fit"]["head_init"] == "probe"
    with pytest.raises(wardrobe.WardrobeError, match="--head-init probe"):
        wardrobe.train(tiny, tmp_path / "scratch", mode="scratch", model="simple_cnn", head_init="probe",
                       show_progress=False)


def test_the_model_is_the_mean_of_the_weights_of_the_later_epochs(tiny, tmp_path, monkeypatch):
    import lightning as L

    validated = {}  # the weights each epoch's validation saw: with --ema, the moving average

    class Validated(L.Callback):
        def on_validation_batch_end(self, trainer, module, outputs, batch, batch_idx, dataloader_idx=0):
            if batch_idx == 0:
                validated[trainer.current_epoch + 1] = {k: v.detach().float().clone() for k, v in
                                                        module.model.state_dict().items() if v.is_floating_point()}

    opts = dict(mode="scratch", model="simple_cnn", epochs=4, image_size=64, batch_size=8, workers=0,
                show_progress=False, ema=0.9, ema_long_tail=0.5, average_from=0.5)
    res = wardrobe.train(tiny, tmp_path / "avg", val_ratio=0.34, extra_callbacks=[Validated()], logit_adjust=True,
                         adjust_min_ratio=10, **opts)
    config = json.loads((res.out / "config.json").read_text())
    assert config["ema_decay"] == 0.9  # balanced classes: --ema-long-tail does not apply
    assert config["weight_average"]["epochs"] == [3, 4]  # the second half of the 4 epochs
    metrics = json.loads((res.out / "metrics.json").read_text())
    assert metrics["model_epochs"] == [3, 4] and metrics["best_epoch"] in (1, 2, 3, 4)
    assert "logit_adjustment" not in config  # balanced classes: below --adjust-min-ratio
    mean = {k: (validated[3][k] + validated[4][k]) / 2 for k in validated[4]}
    assert any(not torch.allclose(validated[3][k], validated[4][k]) for k in mean)  # an average of two models
    for k, v in load_model(res.out)[0].state_dict().items():
        if v.is_floating_point():
            assert torch.allclose(v.float(), mean[k], atol=1e-5), k
    # a rule, not a choice on the validation photos: only the tau would be cross-fitted
    assert config["validation_figures"]["graded"] == "the weight average, tau cross-fitted"
    graded = np.load(res.out / "validation_graded.npz")
    assert graded["average_probs"].shape == graded["probs"].shape and graded["epoch_probs"].shape[0] == 4

    # without a validation split too; the sum travels in last.ckpt, so --resume continues it
    res = wardrobe.train(tiny, tmp_path / "all", val_ratio=0, **opts)
    ckpt = torch.load(res.out / "checkpoints" / "last.ckpt", weights_only=True)
    state = next(v for k, v in ckpt["callbacks"].items() if "EpochAverage" in k)
    assert state["epochs"] == [3, 4]
    for k, v in load_model(res.out)[0].state_dict().items():
        if v.is_floating_point():
            assert torch.allclose(v.float(), state["sum"]["model." + k] / 2, atol=1e-5), k
    # with --average-below-ratio the best epoch is kept on a long tail (any ratio >= 1 here), and on a
    # long tail (here any ratio >= 1) --ema-long-tail is the moving average's decay
    monkeypatch.setattr("wardrobe.training.finetune.LONG_TAIL_RATIO", 1.0)
    step = {}  # what the moving average's update does to an average of 0 and weights of 1

    class Decay(L.Callback):
        def on_train_end(self, trainer, module):
            ema = next(c for c in trainer.callbacks if type(c).__name__ == "MovingAverage")
            step["value"] = float(ema._average_model.avg_fn(torch.zeros(1), torch.ones(1), 1))

    res = wardrobe.train(tiny, tmp_path / "tail", val_ratio=0.34, average_below_ratio=1.0,
                         extra_callbacks=[Decay()], **opts)
    config = json.loads((res.out / "config.json").read_text())
    # ... and its moving average the shorter memory of --ema-long-tail: 0.5 * 0 + (1 - 0.5) * 1
    assert config["ema_decay"] == 0.5 and step["value"] == pytest.approx(0.5)
    assert "weight_average" not in config and config["validation_figures"]["graded"] == "epoch and tau cross-fitted"
    metrics = json.loads((res.out / "metrics.json").read_text())
    assert metrics["model_epochs"] == [metrics["best_epoch"]]
    with pytest.raises(wardrobe.WardrobeError, match="--average-from"):
        wardrobe.train(tiny, tmp_path / "bad", mode="scratch", model="simple_cnn", average_from=1.5,
                       show_progress=False)
