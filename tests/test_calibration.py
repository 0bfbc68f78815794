"""Calibration after unlearning (methods/calibration.py): a known scale recovered, predictions unchanged, the head
multiplied exactly, the depleted classes worked out by hand, and one-line refusals of what cannot be fitted."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from conftest import run_cli
from presets import MODEL_PRESETS, mlp_flags, tiny_model
from unlearn_cli.errors import UserError
from unlearn_cli.io.checkpoint import load_checkpoint
from unlearn_cli.evaluate.epsilon import logit_scaled_confidence
from unlearn_cli.methods.calibration import fit_scale, fold_scale, undepleted_classes
from unlearn_cli.models import classifier_head_names


def _linear_model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 4))


def _sample(count: int = 400, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(count, 6, generator=generator), torch.randint(0, 4, (count,), generator=generator)


def test_a_head_divided_by_three_is_scaled_back_by_three():
    parent = _linear_model()
    inputs, labels = _sample()
    with torch.no_grad():
        under_confident = _linear_model()
        fold_scale(under_confident, 1 / 3)
        scale = fit_scale(under_confident(inputs), labels, logit_scaled_confidence(parent(inputs), labels))
    assert scale == pytest.approx(3.0, rel=1e-4)


def test_folding_changes_no_prediction_and_matches_the_target_quartiles():
    parent = _linear_model()
    inputs, labels = _sample()
    model = _linear_model(seed=5)  # another model: no exact scale exists, the quartiles are matched best
    with torch.no_grad():
        before = model(inputs)
        target = logit_scaled_confidence(parent(inputs), labels)
        scale = fit_scale(before, labels, target)
        fold_scale(model, scale)
        after = model(inputs)
    assert torch.equal(before.argmax(1), after.argmax(1))
    torch.testing.assert_close(after, before * scale, rtol=1e-5, atol=1e-6)
    quartiles = torch.tensor([0.25, 0.5, 0.75], dtype=torch.float64)

    def mismatch(factor: float) -> float:  # squared quartile error of φ at `factor` × the calibrated logits
        phi = logit_scaled_confidence(after * factor, labels)
        return float(((torch.quantile(phi, quartiles) - torch.quantile(target, quartiles)) ** 2).sum())

    assert mismatch(1.0) <= min(mismatch(1 / scale), mismatch(1.01), mismatch(1 / 1.01))


@pytest.mark.parametrize("name", sorted(MODEL_PRESETS))
def test_folding_multiplies_every_model_s_logits_and_touches_only_the_head(name):
    model = tiny_model(name, num_classes=5, input_shape=(3, 8, 8)).eval()
    inputs = torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    before_state = {key: value.clone() for key, value in model.state_dict().items()}
    with torch.no_grad():
        before = model(inputs)
        fold_scale(model, 2.5)
        after = model(inputs)
    torch.testing.assert_close(after, 2.5 * before, rtol=1e-5, atol=1e-5)
    head = set(classifier_head_names(model))
    for key, value in model.state_dict().items():
        if key in head:
            torch.testing.assert_close(value, 2.5 * before_state[key])
        else:
            assert torch.equal(value, before_state[key]), key


def test_depleted_classes_worked_by_hand():
    labels = torch.arange(6).repeat_interleave(10)  # six classes of ten examples
    # IID-like: one example of each class (share 0.1 each, overall 0.1): no class depleted
    assert undepleted_classes(labels, torch.arange(0, 60, 10)).tolist() == [True] * 6
    # a class pair: half of classes 1 and 2 (share 0.5 > 2 × overall 10/60)
    pair = torch.tensor([10, 11, 12, 13, 14, 20, 21, 22, 23, 24])
    assert undepleted_classes(labels, pair).tolist() == [True, False, False, True, True, True]
    # at twice the overall share exactly a class still counts (two classes of four, half of each: 0.5 = 2 × 0.25)
    assert undepleted_classes(labels[:40], pair).tolist() == [True, True, True, True]
    # more than half of a class is depleted however large the forget set: all of classes 0-4, 50 of 60 overall
    assert undepleted_classes(labels, torch.arange(50)).tolist() == [False] * 5 + [True]
    # a class absent from the training set is never a calibration class
    assert undepleted_classes(labels, pair, num_classes=7).tolist() == [True, False, False, True, True, True, False]


@pytest.mark.parametrize("logits, labels, message", [
    (torch.zeros(0, 3), torch.zeros(0, dtype=torch.long), "holds no example"),
    (torch.randn(5, 3), torch.ones(5, dtype=torch.long), "one class only"),
    (torch.tensor([[0.0, math.inf], [1.0, 0.0]]), torch.tensor([0, 1]), "not finite"),
])
def test_what_cannot_be_fitted_is_a_one_line_error(logits, labels, message):
    with pytest.raises(UserError, match=message) as error:
        fit_scale(logits, labels, torch.tensor([1.0, 2.0]))
    assert "\n" not in str(error.value)


def test_a_scale_that_is_not_finite_and_positive_is_refused():
    with pytest.raises(ValueError):
        fold_scale(_linear_model(), 0.0)


# --- apply --calibrate ---------------------------------------------------------------------------------------------


def test_apply_calibrate_is_the_plain_run_with_its_head_scaled_and_the_scale_recorded(tiny_run, tmp_path):
    forget, original = tiny_run["forget"], tiny_run["original"]
    common = ("apply", "-m", original, "-f", forget, "--method", "finetune", "--epochs", "2", "-q")
    plain, calibrated = tmp_path / "plain.safetensors", tmp_path / "calibrated.safetensors"
    assert run_cli(*common, "-o", plain).exit_code == 0
    result = run_cli(*common, "--calibrate", "-o", calibrated)
    assert result.exit_code == 0, result.stderr
    plain_file, calibrated_file = load_checkpoint(str(plain)), load_checkpoint(str(calibrated))
    scale = calibrated_file.provenance.calibration_scale
    assert plain_file.provenance.calibration_scale is None and scale is not None and scale > 0
    head = set(classifier_head_names(plain_file.model))
    for (key, before), (_, after) in zip(plain_file.model.state_dict().items(),
                                         calibrated_file.model.state_dict().items()):
        assert torch.equal(after, before * scale if key in head else before), key
    # the calibration's forwards are counted: the parent's and the result's on its examples
    assert calibrated_file.cost.work.forward > plain_file.cost.work.forward
    assert calibrated_file.cost.work.backward == plain_file.cost.work.backward


def test_apply_calibrate_refuses_a_one_class_calibration_before_any_work(tmp_path):
    forget, original, output = tmp_path / "f.json", tmp_path / "o.safetensors", tmp_path / "u.safetensors"
    assert run_cli("split", "--dataset", "digits", "--kind", "class", "--classes", "0,1,2,3,4,5,6,7,8",
                   "--fraction", "1", "-o", forget, "-q").exit_code == 0
    assert run_cli("train", *mlp_flags(width=8, epochs=1), "-o", original).exit_code == 0
    result = run_cli("apply", "-m", original, "-f", forget, "--calibrate", "-o", output, "-q")
    assert result.exit_code == 1
    assert result.stderr.startswith("error: calibration: ") and "one class only" in result.stderr
    assert result.stderr.count("\n") == 1 and not output.exists()


# --- unlearn calibrate ---------------------------------------------------------------------------------------------


def test_calibrate_afterwards_writes_the_file_apply_calibrate_writes(tiny_run, tmp_path, monkeypatch):
    monkeypatch.setenv("UNLEARN_REPRODUCIBLE", "1")  # no wall time in the files
    forget, original = tiny_run["forget"], tiny_run["original"]
    common = ("apply", "-m", original, "-f", forget, "--method", "finetune", "--epochs", "2", "-q")
    plain, at_once, afterwards = (tmp_path / f"{name}.safetensors" for name in ("plain", "at-once", "afterwards"))
    assert run_cli(*common, "-o", plain).exit_code == 0
    assert run_cli(*common, "--calibrate", "-o", at_once).exit_code == 0
    result = run_cli("calibrate", "-m", plain, "--parent", original, "-f", forget, "-o", afterwards, "-q")
    assert result.exit_code == 0, result.stderr
    assert afterwards.read_bytes() == at_once.read_bytes()


def test_calibrate_refuses_the_wrong_parent_forget_set_or_a_calibrated_file(tiny_run, tmp_path):
    forget, original, oracle = tiny_run["forget"], tiny_run["original"], tiny_run["oracle"]
    calibrated, output = tmp_path / "calibrated.safetensors", tmp_path / "out.safetensors"
    assert run_cli("apply", "-m", original, "-f", forget, "--method", "finetune", "--epochs", "1", "--calibrate",
                   "-o", calibrated, "-q").exit_code == 0
    other_forget = tmp_path / "other.json"
    assert run_cli("split", "--dataset", "digits", "--seed", "3", "-o", other_forget, "-q").exit_code == 0
    for arguments, message in (
            (("-m", calibrated, "--parent", oracle, "-f", forget), "not from"),
            (("-m", calibrated, "--parent", original, "-f", other_forget), "another forget set"),
            (("-m", calibrated, "--parent", original, "-f", forget), "is calibrated already"),
            (("-m", calibrated, "-f", forget), "--parent is required")):
        result = run_cli("calibrate", *arguments, "-o", output, "-q")
        assert result.exit_code == 1 and message in result.stderr, (arguments, result.stderr)
        assert result.stderr.count("\n") == 1 and not output.exists()
