"""The calibration step that can end an unlearning run (`apply --calibrate`, `tune --grid calibrate=…`): the
unlearned model's logits scaled so that its confidence on unseen examples matches its parent's, the scale folded
into the classifier head (methods/calibration.py for the rule and why).

The examples: the validation part of the test set that `unlearn tune --seed SEED` draws (tune/reference.py), of
the classes the forget set does not deplete. They lie in the tuning half, so `evaluate --test-part reported
--tune-seed SEED` never scores on them.

Usage:
    examples = calibration_examples(data, forget_set.indices, seed=0)       # test-set positions
    target = confidence(parent.model, data, examples, device)                # φ, before the method changes the model
    scale = calibrate(unlearned, target, data, examples, device)             # fitted and folded into `unlearned`
    planned = Calibration.before(parent.model, data, forget_set.indices, seed=0, device=device)   # the same, in two
    scale = planned.apply(unlearned, data, device)                                              # steps
    model, meta, scale = calibrated_checkpoint(unlearned_checkpoint, parent, data, forget_indices, seed=0, device=device)
    oracle_scale = fitted_scale(unlearned, confidence(oracle.model, …), data, examples, device)  # an oracle's choice
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

import torch
from torch import nn

from unlearn_cli.cost import WorkMeter
from unlearn_cli.data import ImageData
from unlearn_cli.engine import predict
from unlearn_cli.evaluate.epsilon import logit_scaled_confidence
from unlearn_cli.io.checkpoint import Checkpoint, checkpoint_metadata
from unlearn_cli.methods.calibration import check_sample, check_target, fit_scale, fold_scale, undepleted_classes
from unlearn_cli.tune.reference import tuning_parts

WHAT = "the calibration examples (unseen test examples of the classes the forget set leaves)"


def calibration_examples(data: ImageData, forget_indices: torch.Tensor, seed: int) -> torch.Tensor:
    """int64 test-set positions: the validation part of tune's split for `seed`, of the undepleted classes (labels
    as the model was trained on them)."""
    validation = tuning_parts(data.test_labels, data.train_labels[forget_indices], seed).validation
    keep = undepleted_classes(data.train_labels, forget_indices, data.num_classes)
    return validation[keep[data.test_labels[validation]]]


def _logits(model: nn.Module, data: ImageData, examples: torch.Tensor, device) -> tuple[torch.Tensor, torch.Tensor]:
    logits, labels = predict(model, data.batches("test", examples, 512, device=device))
    return logits.cpu(), labels.cpu()


def confidence(model: nn.Module, data: ImageData, examples: torch.Tensor, device) -> torch.Tensor:
    """φ of `model` on the test examples `examples`: the calibration target when `model` is the parent."""
    return logit_scaled_confidence(*_logits(model, data, examples, device))


def fitted_scale(model: nn.Module, target: torch.Tensor, data: ImageData, examples: torch.Tensor, device) -> float:
    """The scale on `model`'s logits whose φ quartiles on `examples` match those of `target` (φ on the same
    examples: the parent's, or an oracle's to see what an oracle would choose)."""
    return fit_scale(*_logits(model, data, examples, device), target, WHAT)


def calibrate(model: nn.Module, target: torch.Tensor, data: ImageData, examples: torch.Tensor, device) -> float:
    """Fit the scale against `target` and fold it into `model`'s classifier head (in place); -> the scale."""
    scale = fitted_scale(model, target, data, examples, device)
    fold_scale(model, scale)
    return scale


@dataclass
class Calibration:
    """A calibration planned before the method runs (the method may change the parent's model in place): its
    examples and the parent's φ on them."""

    examples: torch.Tensor
    target: torch.Tensor

    @classmethod
    def before(cls, parent: nn.Module, data: ImageData, forget_indices: torch.Tensor, seed: int,
               device) -> "Calibration":
        examples = calibration_examples(data, forget_indices, seed)
        check_sample(data.test_labels[examples], WHAT)  # an impossible calibration is refused before the method runs
        target = confidence(parent, data, examples, device)
        check_target(target, WHAT)
        return cls(examples, target)

    def apply(self, model: nn.Module, data: ImageData, device) -> float:
        """Fit the scale on `model` and fold it in (in place); -> the scale."""
        return calibrate(model, self.target, data, self.examples, device)


def calibrated_checkpoint(unlearned: Checkpoint, parent: Checkpoint, data: ImageData, forget_indices: torch.Tensor,
                          seed: int, device) -> tuple[nn.Module, dict[str, str], float]:
    """`unlearn calibrate`: the model and metadata `apply --calibrate` would have written for `unlearned` (its run,
    then the calibration), and the scale. The calibration's work is added to the run's, its time to the run's; the
    configuration records `calibrate: true` and the seed. Lineage is the caller's to check (`lineage.check_calibratable`)."""
    started = time.perf_counter()
    with WorkMeter() as meter:
        planned = Calibration.before(parent.model.to(device), data, forget_indices, seed, device)
        model = unlearned.model.to(device)
        scale = planned.apply(model, data, device)
    seconds = time.perf_counter() - started
    cost = unlearned.cost
    if cost.work is not None:
        cost = dataclasses.replace(cost, work=cost.work + meter.work)
    extra = {key: unlearned.meta[key] for key in ("data_root", "world_size") if key in unlearned.meta}
    meta = checkpoint_metadata(
        arch=unlearned.arch, arch_kwargs=unlearned.arch_kwargs, num_classes=unlearned.num_classes,
        dataset=unlearned.dataset, dataset_kwargs=unlearned.dataset_kwargs, input_shape=unlearned.input_shape,
        config={**unlearned.config, "calibrate": True, "tune_seed": seed},
        wall_time_s=(unlearned.wall_time_s or 0.0) + seconds,
        provenance=dataclasses.replace(unlearned.provenance, calibration_scale=scale), cost=cost, **extra)
    return model.cpu(), meta, scale
