"""Metrics against values computed by hand on a small known confusion matrix."""

import numpy as np
import pytest

from ml.evaluate import compute_metrics, roc_points, threshold_for_sensitivity

# 10 cases: 4 malignant, 6 benign. At threshold 0.5: TP 3, FN 1, TN 4, FP 2.
Y_TRUE = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0, 0])
Y_PROB = np.array([0.9, 0.8, 0.6, 0.3, 0.7, 0.55, 0.4, 0.2, 0.1, 0.05])


def test_metrics_match_the_hand_computed_values():
    m = compute_metrics(Y_TRUE, Y_PROB, threshold=0.5)
    assert m["confusion_matrix"]["rows_true_columns_predicted"] == [[4, 2], [1, 3]]
    assert m["accuracy"] == pytest.approx(7 / 10)
    assert m["precision"] == pytest.approx(3 / 5)
    assert m["recall"] == m["sensitivity"] == pytest.approx(3 / 4)
    assert m["specificity"] == pytest.approx(4 / 6)
    assert m["f1"] == pytest.approx(2 * (3 / 5) * (3 / 4) / (3 / 5 + 3 / 4))
    assert m["balanced_accuracy"] == pytest.approx((3 / 4 + 4 / 6) / 2)
    # AUC: of the 24 (malignant, benign) pairs the malignant one scores higher in
    # 6 + 6 + 5 + 3 = 20 (0.9 and 0.8 beat all; 0.6 all but 0.7; 0.3 only 0.2, 0.1, 0.05).
    assert m["roc_auc"] == pytest.approx(20 / 24)
    brier = np.mean((Y_PROB - Y_TRUE) ** 2)
    assert m["brier_score"] == pytest.approx(brier)
    assert m["support"] == {"benign": 6, "malignant": 4}


def test_calibration_bins_hold_the_observed_fraction():
    m = compute_metrics(Y_TRUE, Y_PROB, calibration_bins=2)
    # Bin [0, 0.5): probabilities .3 .4 .2 .1 .05 -> 1 malignant of 5.
    # Bin [0.5, 1]: .9 .8 .6 .7 .55 -> 3 of 5.
    assert m["calibration"]["fraction_malignant"] == pytest.approx([0.2, 0.6])
    assert m["calibration"]["mean_predicted"] == pytest.approx([0.21, 0.71])


def test_the_threshold_reaches_the_target_sensitivity_with_fewest_false_alarms():
    assert threshold_for_sensitivity(Y_TRUE, Y_PROB, 0.75) == pytest.approx(0.6)
    assert threshold_for_sensitivity(Y_TRUE, Y_PROB, 1.0) == pytest.approx(0.3)
    at = compute_metrics(Y_TRUE, Y_PROB, threshold=0.3)
    assert at["sensitivity"] == 1.0 and at["specificity"] == pytest.approx(3 / 6)


def test_one_class_only_still_gives_the_metrics_that_exist():
    m = compute_metrics(np.zeros(4, dtype=int), np.array([0.1, 0.2, 0.7, 0.3]))
    assert m["roc_auc"] is None and m["specificity"] == pytest.approx(3 / 4)


def test_roc_points_run_from_the_origin_to_the_corner_and_give_the_auc():
    roc = roc_points(Y_TRUE, Y_PROB)
    fpr, tpr = roc["false_positive_rate"], roc["true_positive_rate"]
    assert (fpr[0], tpr[0]) == (0.0, 0.0) and (fpr[-1], tpr[-1]) == (1.0, 1.0)
    assert fpr == sorted(fpr) and tpr == sorted(tpr)
    assert np.trapezoid(tpr, fpr) == pytest.approx(20 / 24)
    assert max(roc["thresholds"]) <= 1.0  # JSON has no infinity


def test_roc_points_are_thinned_but_keep_both_ends():
    rng = np.random.default_rng(0)
    y_true = rng.integers(0, 2, 5000)
    roc = roc_points(y_true, rng.random(5000), max_points=50)
    assert len(roc["false_positive_rate"]) <= 50
    assert roc["false_positive_rate"][0] == 0.0 and roc["true_positive_rate"][-1] == 1.0
    assert roc_points(np.zeros(4, dtype=int), np.array([0.1, 0.2, 0.7, 0.3])) is None
