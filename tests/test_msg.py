"""MSG: its selection and per-group rates on hand-worked nets, the schedule, its strategy, and the declared
exception to the mask."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from conftest import run_cli
from unlearn_cli.data import create_dataset
from unlearn_cli.data.splits import retain_sample
from unlearn_cli.engine import LoopSettings, cross_entropy_loss, learning_rate, run_loop
from unlearn_cli.errors import UserError
from unlearn_cli.io.checkpoint import load_checkpoint
from unlearn_cli.io.mask import read_mask
from unlearn_cli.localize import LocalizationData, LocalizeSettings, localize
from unlearn_cli.localize.msg import (budget_counts, contrast_gradient, entry_counts, reinitialized_weights,
                                      smallest_share)
from unlearn_cli.methods import UnlearnData, get_method, method_config
from unlearn_cli.methods.msg import reinitialize
from unlearn_cli.models import create_model

# A forget example and a retain example on a 2×2 image, worked by hand for models whose weights are all 0 (the
# softmax is uniform, p = (½, ½), and ∇W CE = (p − e_y) xᵀ per output row):
FORGET = (torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]]), torch.tensor([0]))  # ∇ rows: −½·x_F, +½·x_F
RETAIN = (torch.tensor([[[[0.0, 0.0], [0.0, 2.0]]]]), torch.tensor([1]))  # ∇ rows: +½·x_R, −½·x_R


def zero_conv_net() -> nn.Module:
    """A 2×2 convolution with two output channels is the whole net: its two outputs are the logits."""
    model = nn.Sequential(nn.Conv2d(1, 2, 2, bias=False), nn.Flatten())
    nn.init.zeros_(model[0].weight)
    return model


def batches(pair):
    return lambda: iter([pair])


def test_the_contrast_gradient_and_the_entry_selection_on_a_hand_worked_conv_net():
    model = zero_conv_net()
    gradient = contrast_gradient(model, batches(FORGET)(), batches(RETAIN)())
    # g = g_R − g_F: channel 0 = ½x_R + ½x_F, channel 1 = −(½x_R + ½x_F)
    assert gradient["0.weight"].tolist() == [[[[0.5, 0.0], [0.0, 1.0]]], [[[-0.5, 0.0], [0.0, -1.0]]]]
    layers = reinitialized_weights(model)
    assert list(layers) == ["0.weight"] and entry_counts(layers, 0.3) == {"0.weight": 2}  # round(0.3 × 8) = 2
    selected = smallest_share(gradient, entry_counts(layers, 0.3))["0.weight"]
    # the smallest |g| are the six zeros; equal values go in the fixed order: channel 0's positions 1 and 2
    assert torch.nonzero(selected.flatten()).flatten().tolist() == [1, 2]
    assert entry_counts(layers, 0.5) == {"0.weight": 4}
    four = smallest_share(gradient, entry_counts(layers, 0.5))["0.weight"]
    assert torch.nonzero(four.flatten()).flatten().tolist() == [1, 2, 5, 6]  # the zeros of both channels


def test_a_model_without_convolutions_has_its_linear_weights_selected():
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(4, 2, bias=True))
    nn.init.zeros_(mlp[1].weight)
    nn.init.zeros_(mlp[1].bias)
    gradient = contrast_gradient(mlp, batches(FORGET)(), batches(RETAIN)())
    assert gradient["1.weight"].tolist() == [[0.5, 0.0, 0.0, 1.0], [-0.5, 0.0, 0.0, -1.0]]
    assert list(reinitialized_weights(mlp)) == ["1.weight"]  # the bias is never selected
    mask = smallest_share(gradient, entry_counts(reinitialized_weights(mlp), 0.25))  # round(0.25 × 8) = 2
    assert torch.nonzero(mask["1.weight"].flatten()).flatten().tolist() == [1, 2] and not mask["1.bias"].any()


def test_which_layers_are_reinitialized_in_the_registry_models():
    cnn = reinitialized_weights(create_model("cnn", 10, (1, 8, 8), width=4, depth=2))
    assert cnn and all(isinstance(module, nn.Conv2d) for module in cnn.values())
    mlp = reinitialized_weights(create_model("mlp", 10, (1, 8, 8), width=8))
    assert mlp and all(isinstance(module, nn.Linear) for module in mlp.values())
    vit = reinitialized_weights(create_model("vit", 10, (3, 8, 8), dim=16, depth=1, heads=2, mlp_dim=16, patch=4))
    assert vit and all(isinstance(module, nn.Linear) for module in vit.values())  # only a patch embedding convolves


def test_reinitialize_draws_kaiming_fan_out_values_only_where_selected():
    conv = nn.Conv2d(4, 64, 3, bias=False)
    before = conv.weight.detach().clone()
    selected = torch.zeros_like(before, dtype=torch.bool)
    selected[:32] = True
    reinitialize({"weight": conv}, {"weight": selected}, seed=7)
    assert torch.equal(conv.weight[~selected], before[~selected])
    expected = nn.init.kaiming_normal_(torch.empty(before.shape), mode="fan_out", nonlinearity="relu",
                                       generator=torch.Generator().manual_seed(7))
    assert torch.equal(conv.weight[selected], expected[selected])
    assert abs(float(conv.weight.detach()[selected].std()) - math.sqrt(2 / (64 * 9))) < 0.01  # std √2 / √fan_out


def test_a_gradient_scale_trains_those_entries_at_that_fraction_of_the_rate():
    model = nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[1.0, 1.0]]))
    before = model.weight.detach().clone()
    batch = (torch.tensor([[1.0, 2.0]]), torch.tensor([0]))

    def loss(forward, pair, info):  # d/dw of (w·x)² / 2 = (w·x) x = 3 × (1, 2)
        inputs, _ = pair
        return (forward(inputs) ** 2).sum() / 2, 0, 1

    run_loop(model, loss, lambda epoch: [batch], LoopSettings(epochs=1, lr=0.1, momentum=0.0, schedule="constant"),
             gradient_scale={"weight": torch.tensor([[1.0, 0.1]])})
    assert torch.allclose(before - model.weight.detach(), torch.tensor([[0.3, 0.06]]))


def test_the_warmup_linear_schedule_is_the_entrys_per_epoch_values_per_step():
    settings = LoopSettings(lr=0.003, schedule="warmup-linear")
    # the entry's LinearAnnealingLR over 5 epochs: 1/3, 2/3, 1, 2/3, 1/3 of lr
    assert [round(learning_rate(settings, step, 5) / 0.003, 6) for step in range(5)] == [0.333333, 0.666667, 1.0,
                                                                                         0.666667, 0.333333]
    assert [learning_rate(settings, step, 4) / 0.003 for step in range(4)] == [0.5, 1.0, 2 / 3, 1 / 3]


def test_an_unknown_schedule_is_refused():
    with pytest.raises(UserError, match="^schedule 'triangle': choose one of cosine, constant, warmup-linear"):
        run_loop(nn.Linear(2, 2), cross_entropy_loss, lambda epoch: [(torch.zeros(1, 2), torch.tensor([0]))],
                 LoopSettings(schedule="triangle"))


@pytest.fixture(scope="module")
def cnn_data():
    dataset = create_dataset("digits", train_subset=256)
    factory = lambda: create_model("cnn", 10, (1, 8, 8), width=4, depth=2)  # noqa: E731
    torch.manual_seed(0)
    return factory(), UnlearnData.split(dataset, torch.arange(20), new_model=factory)


def test_the_method_resets_the_selection_trains_kept_weights_slower_and_ignores_a_mask(cnn_data):
    original, data = cnn_data
    layers = reinitialized_weights(original)
    nothing = {name: torch.zeros_like(parameter, dtype=torch.bool) for name, parameter in original.named_parameters()}

    def one_step(kept_rate: float) -> dict[str, torch.Tensor]:  # one plain SGD step; the mask is ignored (declared)
        cfg = method_config("msg", {"max_steps": 1, "lr": 0.05, "weight_decay": 0.0, "momentum": 0.0,
                                    "kept_rate": kept_rate})
        unlearned = get_method("msg").run(copy.deepcopy(original), data, nothing, cfg)
        return {name: parameter.detach() for name, parameter in unlearned.named_parameters()}

    sample = retain_sample(data.dataset.num_train, data.forget, seed=0, size=len(data.forget))
    gradient = contrast_gradient(copy.deepcopy(original), data.dataset.batches("train", data.forget, 64),
                                 data.dataset.batches("train", sample, 64))
    selected = smallest_share(gradient, entry_counts(layers, 0.3))
    slow, full = one_step(0.1), one_step(1.0)
    before = dict(original.named_parameters())
    for name, parameter in before.items():
        if name not in layers:  # linear, normalization, biases: the full rate in both runs
            assert torch.equal(slow[name], full[name]) and not torch.equal(slow[name], parameter), name
            continue
        reset, kept = selected[name], ~selected[name]
        assert int(reset.sum()) == round(0.3 * parameter.numel())
        assert torch.equal(slow[name][reset], full[name][reset])  # the same fresh values, the same full-rate step
        moved_slow, moved_full = slow[name][kept] - parameter[kept], full[name][kept] - parameter[kept]
        assert moved_full.abs().sum() > 0 and torch.allclose(moved_slow, 0.1 * moved_full, atol=1e-8)


def test_the_msg_strategy_is_the_entry_rule_at_a_budget_and_refuses_a_budget_beyond_its_layers():
    model = zero_conv_net()
    data = LocalizationData.from_tensors(*FORGET, retain=RETAIN)
    mask = localize(model, data, LocalizeSettings(strategy="msg", budget=0.25))  # 2 of 8 scalars: rate 0.25
    assert torch.nonzero(mask["0.weight"].flatten()).flatten().tolist() == [1, 2]
    assert budget_counts(reinitialized_weights(model), 2) == {"0.weight": 2}
    head = nn.Sequential(nn.Conv2d(1, 2, 2, bias=False), nn.Flatten(), nn.Linear(2, 2))  # 8 conv of 14 scalars
    with pytest.raises(UserError, match=r"^--budget 0.65: strategy msg selects among the weights of the layers it "
                                        r"re-initializes, 8 of 14 scalars \(57.1%\); lower --budget to 0.571 or less"):
        localize(head, data, LocalizeSettings(strategy="msg", budget=0.65))
    with pytest.raises(UserError, match="^strategy msg contrasts the forget set with a retain sample"):
        localize(model, LocalizationData.from_tensors(*FORGET), LocalizeSettings(strategy="msg", budget=0.25))


def test_an_msg_mask_runs_through_rft_and_apply_msg_notes_that_it_ignores_masks(tiny_run, tmp_path):
    mask, output = tmp_path / "msg-mask.safetensors", tmp_path / "out.safetensors"
    result = run_cli("localize", "-m", tiny_run["original"], "-f", tiny_run["forget"], "--strategy", "msg",
                     "--budget", "0.2", "-q", "-o", mask)
    assert result.exit_code == 0, result.output
    model = load_checkpoint(str(tiny_run["original"])).model
    record = read_mask(str(mask), model)
    assert record.record.strategy == "msg" and 0 < record.record.selected_fraction <= 0.2
    assert all(not selected.any() for name, selected in record.mask.items() if name.endswith("bias"))
    result = run_cli("apply", "-m", tiny_run["original"], "-f", tiny_run["forget"], "--method", "rft", "--mask", mask,
                     "--max-steps", "2", "-q", "-o", output)
    assert result.exit_code == 0, result.output
    result = run_cli("apply", "-m", tiny_run["original"], "-f", tiny_run["forget"], "--method", "msg", "--mask", mask,
                     "--max-steps", "2", "-o", tmp_path / "msg.safetensors")
    assert result.exit_code == 0, result.output
    assert "note: method msg ignores the mask; every parameter may change" in result.stderr
