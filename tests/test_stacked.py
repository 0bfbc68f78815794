"""`train --seeds --stacked`: a pool's models trained at once (stacked parameters, one vectorized step) give the
weights and metadata of one-at-a-time training.

Tolerances. In float64 the stacked loop and the one-model loop agree to 1e-15 (measured): the same arithmetic,
summed in another order by the batched kernels. In float32 that reordering changes each operation by about
1e-7, and training amplifies it along a trajectory: after 3 epochs at lr 0.1 the largest difference measured is
4e-8 for the MLP but 1e-3 for one of the CNN's seeds (BatchNorm and ReLU boundaries amplify it). So the float64
comparison bounds the arithmetic tightly (1e-12), and the float32 command-line comparison bounds what a user
sees (MLP 1e-5, CNN 1e-2), far below what a different seed changes (weights differ by 1e-1).
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from conftest import run_cli
from unlearn_cli.data import create_dataset
from unlearn_cli.engine import LoopSettings, seed_everything, train_classifier
from unlearn_cli.io.checkpoint import load_checkpoint
from unlearn_cli.models import create_model
from unlearn_cli.stacked import stack_refusal, train_stacked

TOLERANCES = {"mlp": 1e-5, "cnn": 1e-2}  # float32, see above
ARCHES = {"mlp": ("--arch", "mlp", "--arch-option", "width=32"), "cnn": ("--arch", "cnn", "--arch-option", "width=8")}


def pool(tmp_path, name, arch, *extra):
    out = str(tmp_path / f"{name}-{{seed}}.safetensors")
    result = run_cli("train", "--dataset", "digits", *ARCHES[arch], "--epochs", "3", "--seeds", "0-2",
                     "--device", "cpu", "--quiet", *extra, "-o", out)
    assert result.exit_code == 0, result.output
    return [load_checkpoint(out.format(seed=seed)) for seed in range(3)]


@pytest.mark.parametrize("arch", sorted(ARCHES))
def test_stacked_training_matches_one_model_at_a_time(tmp_path, arch):
    forget = tmp_path / "forget.json"
    assert run_cli("split", "--dataset", "digits", "--fraction", "0.1", "-q", "-o", forget).exit_code == 0
    stacked = pool(tmp_path, "stacked", arch, "--stacked", "--exclude", forget)
    alone = pool(tmp_path, "alone", arch, "--no-stacked", "--exclude", forget)
    for one, other in zip(stacked, alone):
        mine, theirs = one.model.state_dict(), other.model.state_dict()
        assert mine.keys() == theirs.keys()  # BatchNorm's running statistics too, kept per model
        difference = max(float((mine[name].double() - theirs[name].double()).abs().max()) for name in mine)
        assert difference < TOLERANCES[arch], (arch, difference)
        assert one.provenance == other.provenance  # seed, excluded_sha256: each model's own
        assert {**one.config, "stacked": None} == {**other.config, "stacked": None}
        assert (one.config["stacked"], other.config["stacked"]) == (True, False)
    seeds = [pool_model.model.state_dict() for pool_model in stacked]
    first = next(iter(seeds[0]))
    assert float((seeds[0][first] - seeds[1][first]).abs().max()) > 1e-2  # every model its own initialization


@pytest.mark.parametrize("arch, options", [("mlp", {"width": 32}), ("cnn", {"width": 8})])
def test_the_stacked_loop_is_the_one_model_loop_in_float64(arch, options):
    data = create_dataset("digits", train_subset=512)
    data.train_inputs, data.test_inputs = data.train_inputs.double(), data.test_inputs.double()
    settings = LoopSettings(epochs=2, lr=0.1, momentum=0.9, weight_decay=5e-4)
    indices = torch.arange(0, 512, 2)  # a retain set: every other example

    def build(seed):
        seed_everything(seed)
        return create_model(arch, 10, data.input_shape, **options).double()

    alone = []
    for seed in (3, 5):
        model = build(seed)
        train_classifier(model, data, indices, settings, 64, seed, torch.device("cpu"))
        alone.append(model.state_dict())
    stacked = [build(seed) for seed in (3, 5)]
    train_stacked(stacked, data, indices, settings, 64, [3, 5], torch.device("cpu"))
    for model, reference in zip(stacked, alone):
        state = model.state_dict()
        assert max(float((state[name] - reference[name]).abs().max()) for name in state) < 1e-12


def test_stacked_needs_a_pool(tmp_path):
    result = run_cli("train", "--dataset", "digits", "--stacked", "-o", tmp_path / "model.safetensors")
    assert result.exit_code == 1
    assert "--stacked trains the models of a pool at once; give --seeds" in result.output
    assert not (tmp_path / "model.safetensors").exists()


def test_dropout_is_not_stacked():
    assert stack_refusal(nn.Sequential(nn.Linear(4, 4), nn.ReLU())) is None
    assert stack_refusal(nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.0))) is None
    reason = stack_refusal(nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.1)))
    assert reason is not None and "dropout (1)" in reason
