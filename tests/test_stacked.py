"""`train --seeds --stacked` and `apply --seeds --stacked`: a pool's models trained or unlearned at once (stacked
parameters, one vectorized step) give the weights and metadata of one-at-a-time runs, and each model keeps its own
mask's guarantee: outside it, the parent's values bit for bit.

Tolerances. In float64 the stacked loop and the one-model loop agree to 1e-15 (measured): the same arithmetic,
summed in another order by the batched kernels. In float32 that reordering changes each operation by about
1e-7, and training amplifies it along a trajectory: after 3 epochs at lr 0.1 the largest difference measured is
4e-8 for the MLP but 1e-3 for one of the CNN's seeds (BatchNorm and ReLU boundaries amplify it). So the float64
comparison bounds the arithmetic tightly (1e-12), and the float32 command-line comparison bounds what a user
sees (MLP 1e-5, CNN 1e-2), far below what a different seed changes (weights differ by 1e-1).
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from conftest import run_cli
from unlearn_cli.data import create_dataset
from unlearn_cli.engine import LoopSettings, cross_entropy_loss, seed_everything, train_classifier
from unlearn_cli.errors import UserError
from unlearn_cli.io.checkpoint import load_checkpoint
from unlearn_cli.io.mask import read_mask
from unlearn_cli.methods import UnlearnData, get_method, list_methods, method_config
from unlearn_cli.models import classifier_head_names, create_model
from unlearn_cli.stacked import run_stacked, stack_refusal, train_stacked

STACKING = [name for name in list_methods() if get_method(name).stacks]

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


def test_the_methods_that_stack_are_those_whose_loop_is_the_plain_cross_entropy():
    data = {arch: UnlearnData.split(create_dataset("digits", train_subset=256), torch.arange(20),
                                    new_model=lambda arch=arch: create_model(arch, 10, (1, 8, 8), width=16))
            for arch in ("mlp", "cnn")}
    looping = [name for name in list_methods() if get_method(name).loop is not None]
    assert set(STACKING) == {"finetune", "rft", "random-label", "ct"} and set(STACKING) <= set(looping)
    for name in looping:
        one = data["cnn" if get_method(name).conv_only else "mlp"]
        loop = get_method(name).loop(one.new_model(), one, None, method_config(name, {}))
        plain = loop.loss_fn is cross_entropy_loss and loop.gradient_scale is None  # msg scales its gradients
        assert plain == get_method(name).stacks, name
    assert not any(get_method(name).stacks for name in list_methods() if name not in looping)


def random_masks(model, seeds):
    """One mask per seed, each its own: about a third of every tensor, the first layer's bias never, and the
    second layer's weight only for the first seed (a tensor one model trains and the others keep)."""
    masks = []
    for position, seed in enumerate(seeds):
        generator = torch.Generator().manual_seed(seed)
        mask = {name: torch.rand(parameter.shape, generator=generator) < 0.35
                for name, parameter in model.named_parameters()}
        names = list(mask)
        mask[names[1]][:] = False
        mask[names[2]][:] = position == 0
        masks.append(mask)
    return masks


@pytest.mark.parametrize("method, arch, options", [
    (method, arch, options) for method in STACKING for arch, options in (("mlp", {"width": 32}), ("cnn", {"width": 8}))
    if arch == "cnn" or not get_method(method).conv_only])  # a conv-only method: the cnn alone
def test_stacked_unlearning_is_each_models_own_in_float64(method, arch, options):
    data = create_dataset("digits", train_subset=384)
    data.train_inputs, data.test_inputs = data.train_inputs.double(), data.test_inputs.double()
    new_model = lambda: create_model(arch, 10, data.input_shape, **options).double()  # noqa: E731
    unlearn_data = UnlearnData.split(data, torch.arange(0, 384, 7), new_model=new_model)
    seeds = [3, 5, 8]
    parents = []
    for seed in seeds:
        seed_everything(100 + seed)
        parents.append(new_model())
    masks = random_masks(parents[0], seeds)
    configs = [method_config(method, {"epochs": 2, "lr": 0.05, "batch_size": 64, "weight_decay": 5e-4, "seed": seed})
               for seed in seeds]

    alone = [get_method(method).run(copy.deepcopy(parent), unlearn_data, mask, cfg)
             for parent, mask, cfg in zip(parents, masks, configs)]
    stacked = [copy.deepcopy(parent) for parent in parents]
    loops = [get_method(method).loop(model, unlearn_data, mask, cfg) for model, mask, cfg in zip(stacked, masks, configs)]
    run_stacked(stacked, lambda epoch: [loop.batches_for_epoch(epoch) for loop in loops], loops[0].settings,
                loops[0].steps_per_epoch, torch.device("cpu"), masks=masks, always_trainable=loops[0].always_trainable)

    head = set(loops[0].always_trainable)
    for model, reference, parent, mask in zip(stacked, alone, parents, masks):
        state, expected, before = model.state_dict(), reference.state_dict(), parent.state_dict()
        assert max(float((state[name] - expected[name]).abs().max()) for name in state) < 1e-12
        for name, parameter in model.named_parameters():
            if name not in head:
                outside = ~mask[name]
                assert torch.equal(parameter.detach()[outside], before[name][outside]), name  # bit for bit
        changed = [name for name, parameter in model.named_parameters()
                   if not torch.equal(parameter.detach(), before[name])]
        assert changed  # the models did learn


def test_a_mask_that_selects_nothing_names_its_model():
    models = [create_model("mlp", 10, (1, 8, 8), width=8) for _ in range(2)]
    masks = [{name: torch.ones_like(parameter, dtype=torch.bool) for name, parameter in models[0].named_parameters()},
             {name: torch.zeros_like(parameter, dtype=torch.bool) for name, parameter in models[0].named_parameters()}]
    with pytest.raises(UserError, match="^--mask of seed 7: the mask selects no parameter to train; use a larger "
                                        "--budget or another mask$"):
        run_stacked(models, lambda epoch: [[], []], LoopSettings(), 1, torch.device("cpu"), masks=masks,
                    model_names=["--mask of seed 6", "--mask of seed 7"])


@pytest.fixture(scope="module")
def masked_pool(tmp_path_factory):
    """Three digits MLPs, a forget set and each model's own DEL mask."""
    folder = tmp_path_factory.mktemp("masked-pool")
    forget = folder / "forget.json"
    assert run_cli("split", "--dataset", "digits", "--fraction", "0.1", "-q", "-o", forget).exit_code == 0
    original, mask = str(folder / "original-{seed}.safetensors"), str(folder / "mask-{seed}.safetensors")
    assert run_cli("train", "--dataset", "digits", *ARCHES["mlp"], "--epochs", "3", "--seeds", "0-2", "--device",
                   "cpu", "-q", "-o", original).exit_code == 0
    result = run_cli("localize", "--seeds", "0-2", "-m", original, "-f", forget, "--strategy", "del", "--budget",
                     "0.3", "-q", "-o", mask)
    assert result.exit_code == 0, result.output
    return folder, forget, original, mask


@pytest.mark.parametrize("method", [name for name in STACKING if not get_method(name).conv_only])  # a pool of MLPs
def test_apply_stacked_matches_one_model_at_a_time(masked_pool, method):
    folder, forget, original, mask = masked_pool
    written = {}
    for flag in ("--stacked", "--no-stacked"):
        out = str(folder / f"{method}{flag}-{{seed}}.safetensors")
        result = run_cli("apply", "--seeds", "0-2", "-m", original, "-f", forget, "--mask", mask, "--method", method,
                         "--epochs", "3", "--device", "cpu", "-q", flag, "-o", out)
        assert result.exit_code == 0, result.output
        written[flag] = [load_checkpoint(out.format(seed=seed)) for seed in range(3)]
    for seed, (one, other) in enumerate(zip(written["--stacked"], written["--no-stacked"])):
        mine, theirs = one.model.state_dict(), other.model.state_dict()
        assert max(float((mine[name] - theirs[name]).abs().max()) for name in mine) < TOLERANCES["mlp"]
        assert one.provenance == other.provenance  # seed, parent, mask: each model's own
        assert {**one.config, "stacked": None} == {**other.config, "stacked": None}
        assert (one.config["stacked"], other.config["stacked"]) == (True, False)
        parent = load_checkpoint(original.format(seed=seed)).model
        selection = read_mask(mask.format(seed=seed), parent).mask
        head = set(classifier_head_names(parent)) if method == "rft" else set()
        for name, value in parent.state_dict().items():
            if name not in head:
                outside = ~selection[name]
                assert torch.equal(mine[name][outside], value[outside]), (method, seed, name)


def test_a_method_that_cannot_stack_runs_one_model_at_a_time(masked_pool):
    folder, forget, original, mask = masked_pool
    out = str(folder / "neggrad-{seed}.safetensors")
    result = run_cli("apply", "--seeds", "0-1", "-m", original, "-f", forget, "--mask", mask, "--method", "neggrad",
                     "--epochs", "1", "--device", "cpu", "--stacked", "-o", out)
    assert result.exit_code == 0, result.output
    assert ("note: --stacked: neggrad unlearns one model at a time: its loss is not the plain cross-entropy that a "
            "stacked loop computes") in " ".join(result.output.split())
    assert [load_checkpoint(out.format(seed=seed)).config["stacked"] for seed in range(2)] == [False, False]


def test_apply_stacked_needs_a_pool(masked_pool, tmp_path):
    folder, forget, original, _ = masked_pool
    result = run_cli("apply", "-m", original.format(seed=0), "-f", forget, "--stacked", "-o", tmp_path / "out.safetensors")
    assert result.exit_code == 1
    assert "--stacked unlearns the models of a pool at once; give --seeds" in result.output
    assert not (tmp_path / "out.safetensors").exists()
