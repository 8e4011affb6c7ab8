"""Whether a model's answer on an image may be shown as a verdict: the outcome of the image's
quality checks, the model's own out-of-distribution score and the indeterminate band around
the decision threshold, combined in one place.

Serving (the inference service) and evaluation (`benchmarks.assessability`, the tests) call
`assess`; training records what it needs on the model card. Standard library only: the
inference service's image installs nothing of `ml` beyond the contract, the card and this.

Outcomes:
- `not_assessable`: a check whose site policy is "refuse" failed (no tissue, not H&E, ...).
  No label is given; the probabilities are still stored for audit.
- `indeterminate`: every refusing check passed, but the image is unlike the training data or
  P(malignant) lies in the band where the model was too often wrong on validation. The label
  is given, and shown as not decided.
- `assessable`: nothing above. Checks whose policy is "warn" may still name reasons.
"""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal


class Assessment(StrEnum):
    ASSESSABLE = "assessable"
    INDETERMINATE = "indeterminate"
    NOT_ASSESSABLE = "not_assessable"


class Reason(StrEnum):
    NO_TISSUE = "no_tissue"
    OUT_OF_FOCUS = "out_of_focus"
    NOT_H_AND_E = "not_h_and_e"
    PEN_OR_ARTEFACT = "pen_or_artefact"
    EXPOSURE = "exposure"  # over- or under-exposed
    OUT_OF_DISTRIBUTION = "out_of_distribution"
    NEAR_THRESHOLD = "near_threshold"


# What a failed check does, per site (settings): refuse a verdict, or only warn.
Policy = Literal["refuse", "warn"]
# Reasons that make an image indeterminate rather than not assessable when refused: the
# image is tissue, but the model's answer on it is not to be trusted as a verdict.
MODEL_REASONS = frozenset({Reason.OUT_OF_DISTRIBUTION, Reason.NEAR_THRESHOLD})


@dataclass(frozen=True)
class Check:
    """One measure of an image against its limit: `value` passes when it is `at_least` or
    `at_most` `limit`. `reason` names what a failure means."""

    measure: str
    value: float
    limit: float
    comparison: Literal["at_least", "at_most"]
    reason: Reason

    @property
    def passed(self) -> bool:
        return (
            self.value >= self.limit if self.comparison == "at_least" else self.value <= self.limit
        )

    def as_dict(self) -> dict[str, object]:
        return {
            "measure": self.measure,
            "value": self.value,
            "limit": self.limit,
            "comparison": self.comparison,
            "reason": self.reason.value,
            "passed": self.passed,
        }


@dataclass(frozen=True)
class Outcome:
    assessment: Assessment
    reasons: tuple[Reason, ...]  # every failed check's reason, refusing or warning, in order
    checks: tuple[Check, ...] = field(default=())

    @property
    def gives_label(self) -> bool:
        return self.assessment is not Assessment.NOT_ASSESSABLE


def band_check(
    malignant_probability: float, threshold: float, half_width: float | None
) -> Check | None:
    """The indeterminate band: P(malignant) closer than `half_width` (chosen on validation,
    recorded on the card) to the decision threshold fails with `near_threshold`."""
    if half_width is None:
        return None
    return Check(
        measure="distance_from_threshold",
        value=abs(malignant_probability - threshold),
        limit=half_width,
        comparison="at_least",
        reason=Reason.NEAR_THRESHOLD,
    )


def ood_check(score: float | None, threshold: float | None) -> Check | None:
    """The model's out-of-distribution score against the threshold chosen on held-out data."""
    if score is None or threshold is None:
        return None
    return Check(
        measure="out_of_distribution_score",
        value=score,
        limit=threshold,
        comparison="at_most",
        reason=Reason.OUT_OF_DISTRIBUTION,
    )


def assess(checks: Iterable[Check | None], policies: Mapping[Reason, Policy]) -> Outcome:
    """The outcome of `checks` (None entries are checks that do not apply) under the site's
    `policies` (a reason missing from it refuses)."""
    applied = tuple(check for check in checks if check is not None)
    failed = [check.reason for check in applied if not check.passed]
    reasons = tuple(dict.fromkeys(failed))  # in order, once each
    refused = [reason for reason in reasons if policies.get(reason, "refuse") == "refuse"]
    if any(reason not in MODEL_REASONS for reason in refused):
        assessment = Assessment.NOT_ASSESSABLE
    elif refused:
        assessment = Assessment.INDETERMINATE
    else:
        assessment = Assessment.ASSESSABLE
    return Outcome(assessment, reasons, applied)
