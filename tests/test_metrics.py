"""Metrics against cases computed by hand."""

from __future__ import annotations

import numpy as np
import pytest

from wardrobe.metrics import compute_metrics


def test_hand_computed_case_with_class_never_predicted():
    classes = ["a", "b", "c"]
    # truth:      a a b b c ;  predictions: a b b b b  (c is never predicted)
    y = np.array([0, 0, 1, 1, 2])
    probs = np.array([
        [0.8, 0.1, 0.1],
        [0.3, 0.6, 0.1],
        [0.1, 0.7, 0.2],
        [0.2, 0.5, 0.3],
        [0.1, 0.5, 0.4],
    ])
    m = compute_metrics(y, probs, classes)
    assert m["n_images"] == 5
    assert m["accuracy"] == pytest.approx(3 / 5)
    # per class: a P=1 R=.5 F1=2/3; b P=2/4 R=1 F1=2/3; c P=0 R=0 F1=0
    assert m["per_class"]["a"]["f1"] == pytest.approx(2 / 3)
    assert m["per_class"]["b"]["precision"] == pytest.approx(0.5)
    assert m["per_class"]["c"]["f1"] == 0.0 and m["per_class"]["c"]["support"] == 1
    assert m["f1_macro"] == pytest.approx((2 / 3 + 2 / 3 + 0) / 3)
    assert m["f1_weighted"] == pytest.approx((2 * 2 / 3 + 2 * 2 / 3 + 0) / 5)
    # AP(a): scores a: .8(+) .3(+) .1 .2 .1 -> both positives ranked first -> 1.0
    # AP(b): scores .1 .6 .7(+) .5(+) .5 -> .7 hit (P=1, R=.5), then .6 miss, then the tie at .5
    #        holding one hit and one miss (P=2/4, R=1): AP = .5 * 1 + .5 * .5 = .75
    # AP(c): .1 .1 .2 .3 .4(+) -> ranked first -> 1.0
    assert m["per_class"]["b"]["ap"] == pytest.approx(0.75)
    assert m["map_macro"] == pytest.approx((1.0 + 0.75 + 1.0) / 3)
    # top-3 of 3 classes always contains the truth
    assert m["top3_accuracy"] == 1.0
    assert m["confusion_matrix"] == [[1, 1, 0], [0, 2, 0], [0, 1, 0]]


def test_average_precision_and_top3_by_hand():
    classes = ["a", "b", "c", "d"]
    y = np.array([0, 1, 0, 3])
    probs = np.array([
        [0.4, 0.3, 0.2, 0.1],    # a: correct
        [0.5, 0.15, 0.3, 0.05],  # b: ranked 3rd -> wrong top-1, inside top-3
        [0.05, 0.5, 0.3, 0.15],  # a: ranked 4th -> outside top-3
        [0.02, 0.08, 0.1, 0.8],  # d: correct
    ])
    m = compute_metrics(y, probs, classes)
    assert m["accuracy"] == pytest.approx(0.5)
    # AP(a): scores .4(+) .5 .05(+) .02 -> ranking .5(-) .4(+) .05(+) .02(-) -> (1/2 + 2/3) / 2
    assert m["per_class"]["a"]["ap"] == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert m["per_class"]["c"]["ap"] is None  # no positive: AP undefined, left out of the mean
    ap_b = 1 / 3  # b's positive (.15) ranks 3rd of .3 .15 .5 .08
    assert m["map_macro"] == pytest.approx(((1 / 2 + 2 / 3) / 2 + ap_b + 1.0) / 3)
    assert m["top3_accuracy"] == pytest.approx(0.75)


def test_confusion_matrix_png_stays_readable_at_17_classes(tmp_path):
    """report.html's column is 1100 px wide: the figure must fit it nearly 1:1 so its 9-11 pt
    labels and counts are not scaled down to unreadable (side by side panels were 2,700 px wide)."""
    from PIL import Image

    from wardrobe.evaluation.plots import plot_confusion

    k = 17
    cm = np.full((k, k), 2) + np.diag(np.arange(20, 20 + k))
    path = tmp_path / "cm.png"
    plot_confusion(cm, [f"class-{i}" for i in range(k)], path, title="17 classes")
    width, height = Image.open(path).size
    assert width <= 1200 and height > width  # one panel per row
