"""Localization pinned down: hand-computed masks, the budget rule, CritMem's flip, random controls, every strategy × model."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from hypothesis import given, settings as hypothesis_settings, strategies as st
from torch import nn

from presets import tiny_model
from unlearn_cli.engine import LoopSettings, run_loop, cross_entropy_loss
from unlearn_cli.errors import UserError
from unlearn_cli.io.mask import mask_bytes, mask_metadata
from unlearn_cli.localize import (LocalizationData, LocalizeSettings, build_units, list_granularities, list_strategies,
                                  localize, parameter_shapes, random_like, resolve_settings, summed_gradient)
from unlearn_cli.localize.budget import budget_limit, ranking, select_prefix
from unlearn_cli.localize.summary import mask_overlap, mask_summary
from unlearn_cli.localize.units import top_k_mean
from unlearn_cli.models import create_model, list_models


# --- a network small enough to do on paper --------------------------------------------------------------------------
#
# fc1 = Linear(2, 3): W1 = [[1, 0], [0, 1], [1, -1]], b1 = [0.5, -1, 0];  ReLU;  fc2 = Linear(3, 2): W2 = [[1, 0, 2],
# [0, 1, 1]], b2 = [0, 0.5]. One forget example x = (1, 2), label 0.
#   pre-activation W1 x + b1 = (1.5, 1, -1)  ->  h = (1.5, 1, 0)        (neuron 2 is dead)
#   logits W2 h + b2 = (1.5, 1.5)  ->  softmax p = (0.5, 0.5);  dL/dlogits = p - onehot(0) = (-0.5, 0.5)
#   dL/dW2 = dlogits ⊗ h = [[-0.75, -0.5, 0], [0.75, 0.5, 0]];  dL/db2 = (-0.5, 0.5)
#   dL/dh = W2ᵀ dlogits = (-0.5, 0.5, -0.5); through the ReLU: (-0.5, 0.5, 0)
#   dL/dW1 = (-0.5, 0.5, 0) ⊗ x = [[-0.5, -1], [0.5, 1], [0, 0]];  dL/db1 = (-0.5, 0.5, 0)
HAND_GRADIENT = {
    "0.weight": [[-0.5, -1.0], [0.5, 1.0], [0.0, 0.0]], "0.bias": [-0.5, 0.5, 0.0],
    "2.weight": [[-0.75, -0.5, 0.0], [0.75, 0.5, 0.0]], "2.bias": [-0.5, 0.5],
}


def hand_network() -> nn.Module:
    network = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 2))
    with torch.no_grad():
        network[0].weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, -1.0]]))
        network[0].bias.copy_(torch.tensor([0.5, -1.0, 0.0]))
        network[2].weight.copy_(torch.tensor([[1.0, 0.0, 2.0], [0.0, 1.0, 1.0]]))
        network[2].bias.copy_(torch.tensor([0.0, 0.5]))
    return network


HAND_FORGET = LocalizationData.from_tensors(torch.tensor([[1.0, 2.0]]), torch.tensor([0]))


def as_lists(mask) -> dict:
    return {name: tensor.int().tolist() for name, tensor in mask.items()}


def test_summed_gradient_matches_the_hand_computation():
    gradient = summed_gradient(hand_network(), HAND_FORGET.forget_batches())
    assert {name: tensor.tolist() for name, tensor in gradient.items()} == HAND_GRADIENT


def test_gradient_is_a_sum_of_batch_means():
    # two examples in two batches of one sum two per-example gradients; in one batch of two they are averaged
    inputs, labels = torch.tensor([[1.0, 2.0], [-1.0, 0.5]]), torch.tensor([0, 1])
    network = hand_network()
    apart = summed_gradient(network, LocalizationData.from_tensors(inputs, labels, batch_size=1).forget_batches())
    together = summed_gradient(network, LocalizationData.from_tensors(inputs, labels, batch_size=2).forget_batches())
    for name in apart:
        torch.testing.assert_close(apart[name], 2 * together[name])


def test_del_mask_by_hand():
    # |θ⊙g|: W1 [[0.5, 0], [0, 1], [0, 0]], b1 (0.25, 0.5, 0), W2 [[0.75, 0, 0], [0, 0.5, 0]], b2 (0, 0.25).
    # Neurons (weight row + bias element), in unit order: n0 = (0.5, 0, 0.25), n1 = (0, 1, 0.5), n2 = (0, 0, 0) of size 3;
    # m0 = (0.75, 0, 0, 0), m1 = (0, 0.5, 0, 0.25) of size 4; 17 scalars in all.
    # topk 0.1: k = ceil(0.3) = ceil(0.4) = 1 -> scores n0 0.5, n1 1, n2 0, m0 0.75, m1 0.5.
    # Ranking: n1 (3), m0 (4), n0 (3) and m1 (4) tie at 0.5 -> unit order puts n0 first, n2 (3).
    # Budget 0.5: floor(8.5) = 8 scalars: n1 + m0 = 7; adding n0 makes 10 > 8 -> stop.
    mask = localize(hand_network(), HAND_FORGET, LocalizeSettings(strategy="del", budget=0.5))
    assert as_lists(mask) == {"0.weight": [[0, 0], [1, 1], [0, 0]], "0.bias": [0, 1, 0],
                              "2.weight": [[1, 1, 1], [0, 0, 0]], "2.bias": [1, 0]}
    # Budget 0.6: floor(10.2) = 10: n1 + m0 + n0 = 10 fits exactly; had the tie gone to m1 (size 4) only 7 would fit.
    mask = localize(hand_network(), HAND_FORGET, LocalizeSettings(strategy="del", budget=0.6))
    assert as_lists(mask) == {"0.weight": [[1, 1], [1, 1], [0, 0]], "0.bias": [1, 1, 0],
                              "2.weight": [[1, 1, 1], [0, 0, 0]], "2.bias": [1, 0]}


def test_del_topk_by_hand():
    # topk 0.5: k = ceil(1.5) = 2 for size 3, ceil(2) = 2 for size 4 -> n0 0.375, n1 0.75, n2 0, m0 0.375, m1 0.375.
    # Ranking n1, n0, m0, m1, n2; budget 0.6 -> 10 scalars: n1 (3) + n0 (3) + m0 (4) = 10.
    mask = localize(hand_network(), HAND_FORGET, LocalizeSettings(strategy="del", budget=0.6, topk=0.5))
    assert as_lists(mask) == {"0.weight": [[1, 1], [1, 1], [0, 0]], "0.bias": [1, 1, 0],
                              "2.weight": [[1, 1, 1], [0, 0, 0]], "2.bias": [1, 0]}
    # budget 0.5 -> 8: n1 + n0 = 6, m0 would make 10 -> only the two fc1 neurons
    mask = localize(hand_network(), HAND_FORGET, LocalizeSettings(strategy="del", budget=0.5, topk=0.5))
    assert as_lists(mask)["2.weight"] == [[0, 0, 0], [0, 0, 0]] and as_lists(mask)["0.bias"] == [1, 1, 0]


def test_salun_mask_by_hand():
    # |g| per scalar, in order W1 (6), b1 (3), W2 (6), b2 (2): the two 1s of W1's second column, the two 0.75s of
    # W2's first column, then eight 0.5s of which the first in order is W1[0, 0].
    # Budget 0.3: floor(5.1) = 5 scalars -> the four largest and W1[0, 0].
    mask = localize(hand_network(), HAND_FORGET, LocalizeSettings(strategy="salun", budget=0.3))
    assert as_lists(mask) == {"0.weight": [[1, 1], [0, 1], [0, 0]], "0.bias": [0, 0, 0],
                              "2.weight": [[1, 0, 0], [1, 0, 0]], "2.bias": [0, 0]}


def test_del_reference_by_hand_splits_a_channel():
    # Row scores, k = max(1, int(0.1 × out channels)) = 1: W1 rows (0.5, 1, 0), W2 rows (0.75, 0.5);
    # biases element-wise: b1 (0.25, 0.5, 0), b2 (0, 0.25). Scalars ranked: W1 row 1 (1, 1), W2 row 0 (0.75 ×3),
    # then the 0.5s in order: W1[0, 0], W1[0, 1], b1[1], W2 row 1.
    mask = localize(hand_network(), HAND_FORGET, LocalizeSettings(strategy="del-reference", budget=0.3))  # 5 scalars
    assert as_lists(mask) == {"0.weight": [[0, 0], [1, 1], [0, 0]], "0.bias": [0, 0, 0],
                              "2.weight": [[1, 1, 1], [0, 0, 0]], "2.bias": [0, 0]}
    mask = localize(hand_network(), HAND_FORGET, LocalizeSettings(strategy="del-reference", budget=0.4))  # 6: W1 row 0 split
    assert as_lists(mask)["0.weight"] == [[1, 0], [1, 1], [0, 0]]


def test_del_with_salun_overrides_is_salun():
    salun = localize(hand_network(), HAND_FORGET, LocalizeSettings(strategy="salun", budget=0.3))
    overridden = localize(hand_network(), HAND_FORGET,
                          LocalizeSettings(strategy="del", budget=0.3, criterion="grad", granularity="parameter"))
    assert as_lists(salun) == as_lists(overridden)


def test_weight_criterion_by_hand():
    # |θ| per scalar: 2 (W2[0, 2]) then the 1s in order W1[0,0], W1[1,1], W1[2,0], W1[2,1], b1[1], W2[0,0], W2[1,1], W2[1,2]
    mask = localize(hand_network(), HAND_FORGET,
                    LocalizeSettings(strategy="salun", budget=0.2, criterion="weight"))  # floor(3.4) = 3
    assert as_lists(mask) == {"0.weight": [[1, 0], [0, 1], [0, 0]], "0.bias": [0, 0, 0],
                              "2.weight": [[0, 0, 1], [0, 0, 0]], "2.bias": [0, 0]}


def test_weighted_grad_train_uses_the_training_set():
    # with the training set equal to the forget set, the forget-agnostic control gives DEL's mask
    x, y = torch.tensor([[1.0, 2.0]]), torch.tensor([0])
    data = LocalizationData.from_tensors(torch.zeros(1, 2), torch.tensor([1]), train=(x, y))
    control = localize(hand_network(), data, LocalizeSettings(strategy="del", budget=0.5, criterion="weighted-grad-train"))
    assert as_lists(control) == as_lists(localize(hand_network(), HAND_FORGET, LocalizeSettings(strategy="del", budget=0.5)))
    with pytest.raises(UserError, match="needs the training set"):
        localize(hand_network(), HAND_FORGET, LocalizeSettings(strategy="del", budget=0.5, criterion="weighted-grad-train"))


def test_deepest_and_shallowest_take_whole_layers():
    # layers: fc1 (9 scalars), fc2 (8 scalars)
    deepest = localize(hand_network(), HAND_FORGET, LocalizeSettings(strategy="deepest", budget=0.5))  # 8 scalars
    assert mask_summary(deepest)["selected"] == 8 and bool(deepest["2.weight"].all() and deepest["2.bias"].all())
    with pytest.raises(UserError, match=r"--budget 0.5 keeps nothing: the first unit it ranks \(0.weight, 0.bias\) "
                                        r"holds 9 of 17 trainable scalars \(52.9%\); raise --budget to 0.53 or more"):
        localize(hand_network(), HAND_FORGET, LocalizeSettings(strategy="shallowest", budget=0.5))  # fc1 is 9 > 8
    assert mask_summary(localize(hand_network(), HAND_FORGET, LocalizeSettings(strategy="shallowest", budget=0.53)))[
        "selected"] == 9
    shallowest = localize(hand_network(), HAND_FORGET, LocalizeSettings(strategy="shallowest", budget=0.6))  # 10
    assert bool(shallowest["0.weight"].all()) and not bool(shallowest["2.weight"].any())


# --- units and the budget rule ----------------------------------------------------------------------------------------


def test_top_k_mean_rounds_k_up():
    rows = torch.tensor([[4.0, 3.0, 2.0, 1.0, 0.0]])
    assert top_k_mean(rows, 0.3).tolist() == [3.5]  # k = ceil(1.5) = 2
    assert top_k_mean(rows, 0.1).tolist() == [4.0]  # k = max(1, ceil(0.5)) = 1
    assert top_k_mean(rows, 1.0).tolist() == [2.0]


def test_budget_limit_is_exact_in_decimal():
    assert budget_limit(0.29, 100) == 29  # 0.29 × 100 in binary floating point is 28.999…
    assert budget_limit(0.3, 17) == 5 and budget_limit(1.0, 17) == 17


@hypothesis_settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 5), st.integers(1, 9)), min_size=1, max_size=40),
       st.floats(min_value=1e-3, max_value=1.0))
def test_selection_is_the_longest_fitting_prefix(units, budget):
    scores = torch.tensor([float(score) for score, _ in units], dtype=torch.float64)  # small integers: many ties
    sizes = torch.tensor([size for _, size in units])
    limit = budget_limit(budget, int(sizes.sum()))
    selected = select_prefix(scores, sizes, limit)
    order = ranking(scores)
    count = int(selected.sum())
    assert int(sizes[selected].sum()) <= limit  # never over budget
    assert bool(selected[order[:count]].all())  # a prefix of the ranking ...
    if count < len(units):  # ... and the longest one: the next unit does not fit
        assert int(sizes[selected].sum()) + int(sizes[order[count]]) > limit
    # ties keep the fixed unit order
    ranked = scores[order]
    for a, b in zip(range(len(order) - 1), range(1, len(order))):
        assert ranked[a] > ranked[b] or (ranked[a] == ranked[b] and order[a] < order[b])


@hypothesis_settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from([0.0, 1.0, 2.5, -1.0, math.inf, math.nan]), min_size=1, max_size=30), st.integers(0, 35))
def test_scalar_selection_equals_the_sorted_prefix(scores, limit):
    scores = torch.tensor(scores, dtype=torch.float64)
    expected = torch.zeros(len(scores), dtype=torch.bool)
    expected[ranking(scores)[:limit]] = True
    assert torch.equal(select_prefix(scores, torch.ones(len(scores), dtype=torch.long), limit), expected)


SHAPE = (3, 8, 8)


@pytest.mark.parametrize("arch", list_models())
@pytest.mark.parametrize("granularity", list_granularities())
def test_units_cover_every_scalar_once(arch, granularity):
    model = tiny_model(arch, 10, SHAPE)
    units = build_units(parameter_shapes(model), granularity)
    assert units.total == sum(p.numel() for p in model.parameters())
    mask = units.mask(torch.ones(len(units), dtype=torch.bool))
    assert set(mask) == {name for name, _ in model.named_parameters()}
    assert all(bool(m.all()) for m in mask.values())


def test_neurons_join_the_bias_and_leave_normalization_element_wise():
    model = tiny_model("cnn", 10, SHAPE)
    groups = {group.names: group for group in build_units(parameter_shapes(model), "neuron").groups}
    head = [name for name, _ in model.named_parameters()][-2:]  # the linear head: weight, bias
    assert groups[tuple(head)].count == 10 and groups[tuple(head)].size == model.get_parameter(head[0]).shape[1] + 1
    batch_norm = next(name for name, p in model.named_parameters() if p.dim() == 1 and name not in head)
    assert groups[(batch_norm,)].size == 1


# --- every strategy on every model ------------------------------------------------------------------------------------


def strategy_settings(name: str, budget: float = 0.3) -> LocalizeSettings:
    if name == "critmem":
        return LocalizeSettings(strategy=name, max_iterations=3)
    if name in ("deepest", "shallowest"):
        budget = 0.9  # a whole layer must fit: a tiny MLP's first layer is most of its parameters
    return LocalizeSettings(strategy=name, budget=budget, seed=1)


@pytest.fixture(scope="module")
def tiny_models():
    return {name: tiny_model(name, 10, SHAPE) for name in list_models()}


@pytest.mark.parametrize("arch", list_models())
@pytest.mark.parametrize("strategy", list_strategies())
def test_every_strategy_on_every_model(strategy, arch, tiny_models):
    model = tiny_models[arch]
    generator = torch.Generator().manual_seed(0)
    forget = LocalizationData.from_tensors(torch.randn(2, *SHAPE, generator=generator), torch.tensor([1, 2]), batch_size=1,
                                           retain=(torch.randn(2, *SHAPE, generator=generator), torch.tensor([0, 3])))
    model.train()
    before = copy.deepcopy(model.state_dict())
    cfg = strategy_settings(strategy)
    mask = localize(model, forget, cfg)
    shapes = parameter_shapes(model)
    assert list(mask) == list(shapes) and all(mask[n].shape == s and mask[n].dtype == torch.bool for n, s in shapes.items())
    selected, total = mask_summary(mask)["selected"], sum(math.prod(s) for s in shapes.values())
    if cfg.budget is not None:
        assert selected <= budget_limit(cfg.budget, total)
    assert model.training  # the mode comes back
    for name, tensor in model.state_dict().items():  # parameters and normalization statistics untouched
        assert torch.equal(tensor, before[name]), name
    again = localize(model, forget, cfg)
    assert mask_bytes(mask, {}) == mask_bytes(again, {})  # same inputs, same mask


# --- CritMem -----------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained_mlp():
    """A width-16 MLP trained briefly on separable synthetic data, and examples it gets right (labels ≠ 0)."""
    generator = torch.Generator().manual_seed(0)
    prototypes = torch.randn(4, 1, 4, 4, generator=generator) * 2
    labels = torch.arange(64) % 4
    inputs = prototypes[labels] + 0.3 * torch.randn(64, 1, 4, 4, generator=generator)
    torch.manual_seed(0)
    model = create_model("mlp", 4, (1, 4, 4), width=16)
    run_loop(model, cross_entropy_loss, lambda epoch: [(inputs, labels)], LoopSettings(epochs=60, lr=0.1))
    model.eval()
    correct = (model(inputs).argmax(1) == labels) & (labels != 0)  # all-zero logits would predict class 0
    keep = torch.nonzero(correct).flatten()[:4]
    assert len(keep) == 4
    return model, inputs[keep], labels[keep]


def test_critmem_zeroing_its_channels_misclassifies_each_example(trained_mlp):
    model, inputs, labels = trained_mlp
    units = len(build_units(parameter_shapes(model), "neuron"))
    masks = []
    for index in range(len(labels)):
        single = LocalizationData.from_tensors(inputs[index : index + 1], labels[index : index + 1])
        mask = localize(model, single, LocalizeSettings(strategy="critmem", max_iterations=units))
        assert mask_summary(mask)["selected"] > 0
        zeroed = copy.deepcopy(model)
        with torch.no_grad():
            for name, parameter in zeroed.named_parameters():
                parameter.masked_fill_(mask[name], 0)
        assert int(zeroed(inputs[index : index + 1]).argmax(1)) != int(labels[index])
        masks.append(mask)
    # the mask of the whole forget set is the union of the examples' masks
    union = localize(model, LocalizationData.from_tensors(inputs, labels, batch_size=3),
                     LocalizeSettings(strategy="critmem", max_iterations=units))
    for name in union:
        assert torch.equal(union[name], torch.stack([m[name] for m in masks]).any(0))


def test_critmem_budget_caps_the_union(trained_mlp):
    model, inputs, labels = trained_mlp
    forget = LocalizationData.from_tensors(inputs, labels)
    free = mask_summary(localize(model, forget, LocalizeSettings(strategy="critmem")))["selected"]
    total = sum(p.numel() for p in model.parameters())
    cap = free / total / 2
    capped = localize(model, forget, LocalizeSettings(strategy="critmem", budget=cap))
    assert 0 < mask_summary(capped)["selected"] <= budget_limit(cap, total)


# --- random controls ---------------------------------------------------------------------------------------------------


def per_tensor_counts(mask) -> dict:
    return {name: int(tensor.sum()) for name, tensor in mask.items()}


@pytest.mark.parametrize("reference_strategy", ["del", "salun"])
def test_random_like_reproduces_per_tensor_counts(reference_strategy, tiny_models):
    model = tiny_models["cnn"]
    forget = LocalizationData.from_tensors(torch.randn(3, *SHAPE), torch.tensor([0, 1, 2]))
    reference = localize(model, forget, LocalizeSettings(strategy=reference_strategy, budget=0.3))
    control = localize(model, forget, LocalizeSettings(strategy="random", like=reference, seed=5))
    assert per_tensor_counts(control) == per_tensor_counts(reference)
    assert mask_overlap(control, reference)["iou"] < 1.0  # drawn, not copied
    if reference_strategy == "del":  # whole neurons stay whole neurons
        for name, tensor in control.items():
            if tensor.dim() >= 2:
                rows = tensor.reshape(tensor.shape[0], -1)
                assert bool((rows.all(1) | ~rows.any(1)).all()), name
    # the draw depends only on the seed and the mask, not on the order the tensors come in
    shuffled = dict(reversed(list(parameter_shapes(model).items())))
    assert as_lists(random_like(reference, shuffled, 5)) == as_lists(control)
    assert as_lists(random_like(reference, shuffled, 6)) != as_lists(control)


# --- settings -----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("budget", [0.0, -0.1, 1.5, float("nan"), float("inf")])
def test_budget_outside_the_unit_interval_is_refused(budget):
    with pytest.raises(UserError, match="--budget"):
        resolve_settings(LocalizeSettings(strategy="del", budget=budget))


@pytest.mark.parametrize("settings, message", [
    (LocalizeSettings(strategy="del"), "needs --budget"),
    (LocalizeSettings(strategy="deepest", budget=0.3, criterion="grad"), "scores no parameters"),
    (LocalizeSettings(strategy="critmem", criterion="weighted-grad-train"), "critmem takes one of"),
    (LocalizeSettings(strategy="del", budget=0.3, like={}), "--like applies to --strategy random only"),
    (LocalizeSettings(strategy="random", budget=0.3, like={}), "drop --budget"),
    (LocalizeSettings(strategy="del-reference", budget=0.3, granularity="neuron"), "--granularity"),
    (LocalizeSettings(strategy="del", budget=0.3, topk=0.0), "--topk"),
    (LocalizeSettings(strategy="nope", budget=0.3), "--strategy 'nope'"),
])
def test_inconsistent_settings_are_refused(settings, message):
    with pytest.raises(UserError, match=message):
        resolve_settings(settings)


def test_presets_fill_criterion_and_granularity():
    resolved = resolve_settings(LocalizeSettings(strategy="del", budget=0.3))
    assert (resolved.criterion, resolved.granularity) == ("weighted-grad", "neuron")
    resolved = resolve_settings(LocalizeSettings(strategy="salun", budget=0.3, granularity="neuron"))
    assert (resolved.criterion, resolved.granularity) == ("grad", "neuron")


def test_mask_file_is_byte_identical_for_the_same_inputs():
    def file() -> bytes:
        mask = localize(hand_network(), HAND_FORGET, LocalizeSettings(strategy="del", budget=0.5))
        return mask_bytes(mask, mask_metadata(strategy="del", criterion="weighted-grad", granularity="neuron", budget=0.5,
                                              mask=mask, model_sha256="m", forget_sha256="f", seed=0))
    assert file() == file()
