"""How checks, site policies and the model's own doubts combine into one outcome."""

import pytest

from ml.assessment import Assessment, Check, Reason, assess, band_check, ood_check

TISSUE = Check("tissue_fraction", 0.02, 0.2, "at_least", Reason.NO_TISSUE)
FOCUS = Check("focus", 3.0, 10.0, "at_least", Reason.OUT_OF_FOCUS)
GOOD_TISSUE = Check("tissue_fraction", 0.8, 0.2, "at_least", Reason.NO_TISSUE)


def test_a_failed_refusing_check_gives_no_verdict():
    outcome = assess([TISSUE, FOCUS], {})
    assert outcome.assessment is Assessment.NOT_ASSESSABLE
    assert outcome.reasons == (Reason.NO_TISSUE, Reason.OUT_OF_FOCUS)
    assert not outcome.gives_label
    assert [c.passed for c in outcome.checks] == [False, False]


def test_a_site_that_only_warns_keeps_the_verdict_and_names_the_reason():
    outcome = assess([GOOD_TISSUE, FOCUS], {Reason.OUT_OF_FOCUS: "warn"})
    assert outcome.assessment is Assessment.ASSESSABLE
    assert outcome.reasons == (Reason.OUT_OF_FOCUS,)
    assert outcome.gives_label


def test_the_models_doubts_make_tissue_indeterminate_not_unassessable():
    unlike = ood_check(score=40.0, threshold=25.0)
    near = band_check(malignant_probability=0.52, threshold=0.5, half_width=0.05)
    outcome = assess([GOOD_TISSUE, unlike, near], {})
    assert outcome.assessment is Assessment.INDETERMINATE
    assert outcome.reasons == (Reason.OUT_OF_DISTRIBUTION, Reason.NEAR_THRESHOLD)
    assert outcome.gives_label
    # Not tissue outweighs the model's doubts.
    assert assess([TISSUE, unlike], {}).assessment is Assessment.NOT_ASSESSABLE


@pytest.mark.parametrize(
    ("probability", "passed"), [(0.5, False), (0.46, False), (0.44, True), (0.9, True), (0.1, True)]
)
def test_the_band_is_measured_from_the_threshold(probability, passed):
    check = band_check(probability, threshold=0.5, half_width=0.05)
    assert check is not None and check.passed is passed
    assert check.as_dict()["reason"] == "near_threshold"


def test_checks_that_do_not_apply_are_left_out():
    assert band_check(0.5, 0.5, None) is None
    assert ood_check(None, 3.0) is None and ood_check(3.0, None) is None
    outcome = assess([GOOD_TISSUE, None, None], {})
    assert outcome.assessment is Assessment.ASSESSABLE
    assert outcome.reasons == () and len(outcome.checks) == 1


def test_each_reason_is_named_once_in_order():
    again = Check("tissue_fraction_at_edges", 0.0, 0.1, "at_least", Reason.NO_TISSUE)
    assert assess([TISSUE, FOCUS, again], {}).reasons == (Reason.NO_TISSUE, Reason.OUT_OF_FOCUS)
