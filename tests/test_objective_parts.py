"""The oracle-free objective's retain-fit and confidence parts, worked by hand on two-class logits (for two
classes φ = z_y − z_other)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from unlearn_cli.tune.objectives import OracleFreeWeights, Outputs, objective_standard_error, oracle_free_score

SAME = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
SAME_LABELS = torch.tensor([0, 1])


def _outputs(retain, confidence) -> Outputs:
    return Outputs(SAME, SAME_LABELS, SAME, SAME_LABELS, SAME, SAME_LABELS,
                   retain_logits=torch.tensor(retain), retain_labels=torch.tensor([0, 1, 1, 1]),
                   confidence_logits=torch.tensor(confidence), confidence_labels=torch.tensor([0, 1]))


CANDIDATE = _outputs([[2.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 3.0]], [[1.0, 0.0], [0.0, 2.0]])
ORIGINAL = _outputs([[3.0, 0.0], [0.0, 2.0], [0.0, 1.0], [0.0, 4.0]], [[2.0, 0.0], [0.0, 2.0]])


BOTH = OracleFreeWeights(retain_fit=1.0, confidence=1.0)


def test_retain_fit_and_confidence_by_hand():
    score = oracle_free_score(CANDIDATE, ORIGINAL, BOTH)
    # retain: accuracy 75% against 100% (25 points, 5 allowed: 20) plus KS of φ {2, 1, −1, 3} against
    # {3, 2, 1, 4}, whose CDFs differ by at most 0.25 (25 points)
    assert score["retain_fit"] == pytest.approx(45.0)
    # V′: φ {1, 2} against {2, 2}: the CDFs differ by 0.5 at 1
    assert score["confidence"] == pytest.approx(50.0)
    # F, R and V agree everywhere, so the objective is the two new parts; by default they are shown, not weighted
    assert score["objective"] == pytest.approx(95.0)
    shown = oracle_free_score(CANDIDATE, ORIGINAL)
    assert shown["objective"] == 0.0 and shown["retain_fit"] == pytest.approx(45.0)
    weighted = oracle_free_score(CANDIDATE, ORIGINAL, OracleFreeWeights(retain_fit=2.0, confidence=0.0))
    assert weighted["objective"] == pytest.approx(90.0)


def test_the_original_scores_zero_on_both_and_outputs_without_them_skip_them():
    score = oracle_free_score(ORIGINAL, ORIGINAL)
    assert score["retain_fit"] == 0.0 and score["confidence"] == 0.0
    plain = dataclasses.replace(CANDIDATE, retain_logits=None, retain_labels=None, confidence_logits=None,
                                confidence_labels=None)
    assert "retain_fit" not in oracle_free_score(plain, ORIGINAL)
    assert "confidence" not in oracle_free_score(plain, ORIGINAL)


def test_the_bootstrap_resamples_the_new_parts_too():
    # with the new parts the objective varies over resamples; without them every resample scores 0
    assert objective_standard_error(CANDIDATE, ORIGINAL, BOTH, draws=50) > 0
    plain = dataclasses.replace(CANDIDATE, retain_logits=None, retain_labels=None, confidence_logits=None,
                                confidence_labels=None)
    assert objective_standard_error(plain, plain, draws=20) == 0


def test_forget_gap_against_the_depletion_target_by_hand():
    # F: three examples of class 0 (two right) and one of class 1 (right): acc(F) = 75%, class mix w = (3/4, 1/4).
    # R: class 0 right on 1 of 2 (50%), class 1 on 2 of 2 (100%); acc(R) = 75%, so without drops the gap is 0.
    forget = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    forget_labels = torch.tensor([0, 0, 0, 1])
    reference = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0], [0.0, 1.0]])
    reference_labels = torch.tensor([0, 0, 1, 1])
    plain = Outputs(forget, forget_labels, reference, reference_labels, SAME, SAME_LABELS)
    assert oracle_free_score(plain, plain)["forget_gap"] == 0.0
    # a retrained model is expected to lose 20 points on class 0 and none on class 1:
    # target = 3/4 · (50 − 20) + 1/4 · (100 − 0) = 47.5, so |75 − 47.5| = 27.5
    depleted = dataclasses.replace(plain, forget_drops=torch.tensor([20.0, 0.0], dtype=torch.float64))
    score = oracle_free_score(depleted, plain)
    assert score["forget_target"] == pytest.approx(47.5)
    assert score["forget_gap"] == pytest.approx(27.5)
    assert "forget_target" not in oracle_free_score(plain, plain)
    # the target reads the original's R: a candidate right on every example of R is held to the same 47.5
    sure = dataclasses.replace(depleted, reference_logits=torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]]))
    assert oracle_free_score(sure, plain)["forget_target"] == pytest.approx(47.5)
