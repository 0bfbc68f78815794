"""Localization strategies: `fn(model, forget, settings) -> Mask`, all in one registry.

Each strategy carries a preset criterion and granularity; `--criterion` / `--granularity` override them
where the strategy uses them (resolved by `resolve_settings`). Scoring (criteria.py), grouping into
units (units.py) and budget selection (budget.py) are shared; a strategy only chooses how units are
scored and which of them survive.

- `del`           weighted-grad, neuron: top-k mean neuron scores, longest prefix within the budget (DEL paper).
- `salun`         grad, parameter: SalLoc (Fan et al. 2023, SalUn).
- `critmem`       Maini et al. 2023 ("Can neural network memorization be localized?"), adapted to a forget set:
                  for each forget example on its own, score channels by Σ over the channel of |θ ⊙ g| (g of
                  that example's loss), zero the highest-scoring channel not yet chosen, recompute, until the
                  example is misclassified or `max_iterations`; the mask is the union over examples and the
                  model is restored afterwards. The budget, when given, only caps that union (units chosen by
                  more examples first, then those chosen earlier).
- `deepest` / `shallowest`  whole layers (the parameters a module owns) from the output / input side, while
                  they fit in the budget (EU-k / CF-k of Goel et al. 2022 and its control).
- `random`        control: with `like`, another mask's per-tensor unit counts drawn at random (the DEL paper's
                  Table 5 construction); without, random units up to the budget. Seeded.
- `msg`           MSG's re-initialization set (NeurIPS 2023 challenge, localize/msg.py): in each re-initialized layer
                  (conv weights; linear weights on an MLP) the same share of the weights with the smallest
                  |∇CE(retain sample) − ∇CE(forget set)|, the share set so the mask holds at most the budget.
- `del-reference` the rule of the authors' released implementation (Torkzadehmahani et al.,
                  github.com/reihaneh-torkzadehmahani/DEL-Unlearning), for faithful reproductions:
                  a tensor with ndim >= 2 gives each output row the mean of the top-k of |θ ⊙ g| in that row,
                  k = max(1, int(topk × number of output channels)) (capped at the row length), or the plain
                  row mean on the `vit` architecture; 1-D parameters are scored element-wise; every scalar
                  takes its row's score, all scalars are ranked globally and the top floor(b × total) kept.
                  Differences from `del`: (1) k counts output channels, not the row's scalars, and rounds
                  down instead of up; (2) a bias is not joined to its neuron but ranked element by element;
                  (3) ranking is over scalars, so a channel may be split at the cut and the budget is met
                  exactly, where `del` keeps whole neurons and stops at the first neuron that does not fit;
                  (4) on ViT rows are averaged, not top-k averaged.

Usage:
    settings = resolve_settings(LocalizeSettings(strategy="del", budget=0.3))
    mask = STRATEGIES.get("del")(model, LocalizationData.from_tensors(inputs, labels), settings)
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from unlearn_cli import names
from unlearn_cli.errors import UserError, example, flag
from unlearn_cli.localize.base import LocalizationData, LocalizeSettings, Mask
from unlearn_cli.localize.budget import budget_limit, check_budget, ranking, select_prefix
from unlearn_cli.localize.criteria import CRITERIA, evaluation_with_gradients
from unlearn_cli.localize.msg import budget_counts, contrast_gradient, reinitialized_weights, smallest_share
from unlearn_cli.localize.units import Shapes, build_units, parameter_shapes, top_k_mean
from unlearn_cli.registry import Registry

STRATEGIES: Registry = Registry("strategy")
ROW_MEAN_ARCHS = frozenset({"vit"})  # del-reference: the authors average whole rows on their ViT
NO_CRITERION = "none"  # metadata value for strategies that score nothing


@dataclass(frozen=True)
class Strategy:
    run: Callable[[nn.Module, LocalizationData, LocalizeSettings], Mask]
    criterion: str | None  # preset; None: the strategy uses no criterion and refuses one
    granularity: str  # preset
    granularities: tuple[str, ...]  # the ones it accepts
    budget: str  # "required", "cap" (optional upper bound) or "unless-like"
    summary: str  # its line in `localize --help` (names.STRATEGIES)
    criteria: tuple[str, ...] | None = None  # accepted criteria (None: every registered one)

    def __call__(self, model: nn.Module, forget: LocalizationData, settings: LocalizeSettings) -> Mask:
        return self.run(model, forget, settings)


def _register(name: str, **preset):
    """Decorator: register `run` under `name`, its --help line the one names.STRATEGIES declares torch-free."""

    def decorator(run):
        STRATEGIES.register(name)(Strategy(run=run, summary=names.STRATEGIES[name], **preset))
        return run

    return decorator


def list_strategies() -> list[str]:
    return STRATEGIES.names()


def get_strategy(name: str) -> Strategy:
    try:
        return STRATEGIES.get(name)
    except ValueError as error:
        raise UserError(str(error).replace("unknown strategy", "--strategy")) from None


def resolve_settings(settings: LocalizeSettings) -> LocalizeSettings:
    """A copy with the strategy's preset filled in; every inconsistent option is a UserError naming it."""
    strategy = get_strategy(settings.strategy)
    name = settings.strategy
    criterion = settings.criterion
    if criterion is not None and strategy.criterion is None:
        raise UserError(f"{flag('criterion')} {criterion}: strategy {name} scores no parameters; drop {flag('criterion')}")
    criterion = criterion or strategy.criterion
    allowed = strategy.criteria or tuple(CRITERIA.names())
    if criterion is not None and criterion not in allowed:
        raise UserError(f"{flag('criterion')} {criterion!r}: strategy {name} takes one of {', '.join(allowed)}")
    granularity = settings.granularity or strategy.granularity
    if granularity not in strategy.granularities:
        raise UserError(f"{flag('granularity')} {granularity!r}: strategy {name} takes {', '.join(strategy.granularities)}")
    if settings.like is not None and strategy.budget != "unless-like":
        raise UserError(f"--like applies to --strategy random only, not {name}")
    if strategy.budget == "unless-like" and settings.like is not None:
        if settings.budget is not None:
            raise UserError(f"--like reproduces the size of the given mask; drop {flag('budget')}")
    elif settings.budget is not None or strategy.budget != "cap":
        if settings.budget is None:
            raise UserError(f"strategy {name} needs {flag('budget')}, a fraction of the parameters in (0, 1], "
                            f"e.g. {example('budget', 0.3)}")
        check_budget(settings.budget)
    if isinstance(settings.topk, bool) or not 0 < settings.topk <= 1:
        raise UserError(f"{flag('topk')} {settings.topk!r}: must be in (0, 1], e.g. {example('topk', 0.1)}")
    if settings.max_iterations < 1:
        raise UserError(f"{flag('max_iterations')} {settings.max_iterations}: must be at least 1")
    return dataclasses.replace(settings, criterion=criterion, granularity=granularity)


def localize(model: nn.Module, forget: LocalizationData, settings: LocalizeSettings) -> Mask:
    """Resolve the settings and run the strategy: the mask, one bool tensor per parameter."""
    settings = resolve_settings(settings)
    return get_strategy(settings.strategy)(model, forget, settings)


def _scores(model: nn.Module, forget: LocalizationData, settings: LocalizeSettings) -> dict[str, torch.Tensor]:
    return CRITERIA.get(settings.criterion)(model, forget, settings.on_step)


def _keep_best(units, unit_scores: torch.Tensor, budget: float) -> Mask:
    """The best-ranked units that fit the budget; a budget too small for the first of them is an error
    (an empty mask would leave every method a no-op)."""
    selected = select_prefix(unit_scores, units.sizes, budget_limit(budget, units.total))
    if not bool(selected.any()):
        first = int(ranking(unit_scores)[0])
        group, row = units.locate(first)
        size = int(units.sizes[first])
        needed = math.ceil(size / units.total * 1000) / 1000  # 3 decimals, rounded up: enough for this unit
        where = ", ".join(group.names) + (f" row {row}" if group.count > 1 else "")
        raise UserError(f"{flag('budget')} {budget:g} keeps nothing: the first unit it ranks ({where}) holds {size:,} of "
                        f"{units.total:,} trainable scalars ({size / units.total:.1%}); raise {flag('budget')} to {needed:g} or more")
    return units.mask(selected)


NEURON_LEVELS = ("neuron", "parameter", "layer")


@_register("salun", criterion="grad", granularity="parameter", granularities=NEURON_LEVELS, budget="required")
@_register("del", criterion="weighted-grad", granularity="neuron", granularities=NEURON_LEVELS, budget="required")
def scored_units(model: nn.Module, forget: LocalizationData, settings: LocalizeSettings) -> Mask:
    """Score scalars by the criterion, units by the mean of their top-k scores, keep the best prefix."""
    units = build_units(parameter_shapes(model), settings.granularity)
    unit_scores = units.reduce(_scores(model, forget, settings), lambda rows: top_k_mean(rows, settings.topk))
    return _keep_best(units, unit_scores, settings.budget)


@_register("critmem", criterion="weighted-grad", granularity="neuron", granularities=("neuron", "parameter"),
           budget="cap", criteria=("weighted-grad", "grad", "weight"))
def critmem(model: nn.Module, forget: LocalizationData, settings: LocalizeSettings) -> Mask:
    units = build_units(parameter_shapes(model), settings.granularity)
    combine = CRITERIA.get(settings.criterion).combine
    cap = settings.max_iterations
    chosen_by = torch.zeros(len(units), dtype=torch.long)  # examples that chose each unit
    earliest = torch.full((len(units),), cap, dtype=torch.long)  # earliest iteration a unit was chosen at
    examples = flipped = 0
    with evaluation_with_gradients(model) as parameters:
        names, tensors = list(parameters), list(parameters.values())
        original = [tensor.detach().clone() for tensor in tensors]
        try:
            for inputs, labels in forget.forget_batches():
                for index in range(len(labels)):
                    taken, order, misclassified, loss = _critical_units(model, units, names, tensors, combine, cap,
                                                                  inputs[index : index + 1], labels[index : index + 1])
                    with torch.no_grad():
                        for tensor, saved in zip(tensors, original):
                            tensor.copy_(saved)
                    chosen_by += taken
                    earliest = torch.minimum(earliest, order)
                    examples += 1
                    flipped += int(misclassified)
                    if settings.on_step is not None:
                        settings.on_step({"step": examples, "images": examples, "loss": loss,
                                          "accuracy": flipped / examples})
        finally:
            with torch.no_grad():
                for tensor, saved in zip(tensors, original):
                    tensor.copy_(saved)
    if examples == 0:
        raise UserError("the forget set yields no examples; give a non-empty forget set")
    selected = chosen_by > 0
    if settings.budget is not None:
        # units chosen by more examples first, then those chosen at an earlier iteration
        priority = chosen_by.double() * (cap + 1) + (cap - earliest).double()
        selected &= select_prefix(priority, units.sizes, budget_limit(settings.budget, units.total))
    return units.mask(selected)


def _critical_units(model, units, names, tensors, combine, cap, inputs, labels):
    """One example's channels, zeroed one at a time in `tensors` (the caller restores them).

    Returns (taken bool [units], the iteration at which each was taken (`cap` for the others),
    whether the example ended up misclassified, its loss before any channel was zeroed).
    """
    taken = torch.zeros(len(units), dtype=torch.bool)
    order = torch.full((len(units),), cap, dtype=torch.long)
    live = dict(zip(names, tensors))
    first_loss = None
    for iteration in range(cap):
        logits = model(inputs)
        loss = F.cross_entropy(logits, labels)
        first_loss = float(loss.detach()) if first_loss is None else first_loss
        if int(logits.argmax(dim=1)[0]) != int(labels[0]):
            return taken, order, True, first_loss
        gradients = torch.autograd.grad(loss, tensors, allow_unused=True)
        scores = {name: combine(tensor.detach(), torch.zeros_like(tensor) if gradient is None else gradient)
                  for name, tensor, gradient in zip(names, tensors, gradients)}
        unit_scores = units.reduce(scores, lambda rows: rows.double().sum(dim=1))  # Σ over the channel (Maini et al. 2023)
        unit_scores = torch.where(torch.isnan(unit_scores), torch.full_like(unit_scores, -math.inf), unit_scores)
        unit_scores[taken] = -math.inf
        unit = int(unit_scores.argmax())  # the first of equal maxima: the fixed unit order breaks ties
        taken[unit] = True
        order[unit] = iteration
        group, row = units.locate(unit)
        one_unit = torch.zeros(group.count, dtype=torch.bool)
        one_unit[row] = True
        with torch.no_grad():
            for name, unit_mask in group.mask(one_unit).items():
                live[name].masked_fill_(unit_mask.to(live[name].device), 0)
    with torch.no_grad():
        misclassified = int(model(inputs).argmax(dim=1)[0]) != int(labels[0])
    return taken, order, misclassified, first_loss


def _whole_layers(model: nn.Module, settings: LocalizeSettings, from_output: bool) -> Mask:
    units = build_units(parameter_shapes(model), "layer")  # in order from the input side
    depth = torch.arange(len(units), dtype=torch.float64)
    return _keep_best(units, depth if from_output else -depth, settings.budget)


@_register("deepest", criterion=None, granularity="layer", granularities=("layer",), budget="required")
def deepest(model: nn.Module, forget: LocalizationData, settings: LocalizeSettings) -> Mask:
    return _whole_layers(model, settings, from_output=True)


@_register("shallowest", criterion=None, granularity="layer", granularities=("layer",), budget="required")
def shallowest(model: nn.Module, forget: LocalizationData, settings: LocalizeSettings) -> Mask:
    return _whole_layers(model, settings, from_output=False)


@_register("random", criterion=None, granularity="neuron", granularities=NEURON_LEVELS, budget="unless-like")
def random_units(model: nn.Module, forget: LocalizationData, settings: LocalizeSettings) -> Mask:
    shapes = parameter_shapes(model)
    if settings.like is not None:
        return random_like(settings.like, shapes, settings.seed)
    units = build_units(shapes, settings.granularity)
    generator = torch.Generator().manual_seed(settings.seed)
    return _keep_best(units, torch.rand(len(units), generator=generator, dtype=torch.float64), settings.budget)


def random_like(reference: Mask, shapes: Shapes, seed: int) -> Mask:
    """A mask with `reference`'s selected-unit count in every tensor, the units drawn at random.

    Where the reference keeps whole neurons of a tensor (each weight row and its bias element all in or
    all out), as many random whole neurons are drawn; elsewhere each tensor gets as many random scalars
    as the reference selects in it. Either way every tensor selects exactly as many scalars as before.
    """
    if set(reference) != set(shapes):
        raise UserError("the --like mask does not fit this model (other parameter names); use a mask computed on it")
    for name, shape in shapes.items():
        if reference[name].shape != shape:
            raise UserError(f"the --like mask has shape {tuple(reference[name].shape)} for {name}, the model {tuple(shape)}")
    generator = torch.Generator().manual_seed(seed)  # consumed in name order: the same draw from any entry point

    def draw(count: int, chosen: int) -> torch.Tensor:
        selected = torch.zeros(count, dtype=torch.bool)
        selected[torch.randperm(count, generator=generator)[:chosen]] = True
        return selected

    mask: Mask = {}
    for group in build_units(dict(sorted(shapes.items())), "neuron").groups:
        rows = group.rows({name: reference[name].bool() for name in group.names})  # [count, size]
        full = rows.all(dim=1)
        if bool((full | ~rows.any(dim=1)).all()):
            mask.update(group.mask(draw(group.count, int(full.sum()))))
            continue
        for name, shape in zip(group.names, group.shapes):
            mask[name] = draw(math.prod(shape), int(reference[name].sum())).reshape(shape)
    return {name: mask[name] for name in shapes}


@_register("msg", criterion=None, granularity="parameter", granularities=("parameter",), budget="required")
def msg(model: nn.Module, forget: LocalizationData, settings: LocalizeSettings) -> Mask:
    if forget.retain_batches is None:
        raise UserError("strategy msg contrasts the forget set with a retain sample, which was not given")
    layers = reinitialized_weights(model)
    total = sum(parameter.numel() for parameter in model.parameters())
    eligible = sum(module.weight.numel() for module in layers.values())
    limit = budget_limit(settings.budget, total)
    if limit > eligible:
        share = math.floor(eligible / total * 1000) / 1000  # 3 decimals, rounded down: a budget that fits
        raise UserError(f"{flag('budget')} {settings.budget:g}: strategy msg selects among the weights of the layers it "
                        f"re-initializes, {eligible:,} of {total:,} scalars ({eligible / total:.1%}); lower "
                        f"{flag('budget')} to {share:g} or less")
    gradient = contrast_gradient(model, forget.forget_batches(), forget.retain_batches(), settings.on_step)
    mask = smallest_share(gradient, budget_counts(layers, limit))
    if not any(bool(selected.any()) for selected in mask.values()):
        raise UserError(f"{flag('budget')} {settings.budget:g} keeps nothing: it is less than one weight of every layer "
                        f"msg re-initializes; raise {flag('budget')}")
    return mask


@_register("del-reference", criterion="weighted-grad", granularity="parameter", granularities=("parameter",),
           budget="required")
def del_reference(model: nn.Module, forget: LocalizationData, settings: LocalizeSettings) -> Mask:
    row_mean = settings.arch in ROW_MEAN_ARCHS
    per_scalar = {}
    for name, scores in _scores(model, forget, settings).items():
        if scores.dim() < 2:
            per_scalar[name] = scores
            continue
        rows = scores.reshape(scores.shape[0], -1).double()  # [out channels, scalars per channel]
        if row_mean:
            row_scores = rows.mean(dim=1)
        else:
            k = min(max(1, int(settings.topk * scores.shape[0])), rows.shape[1])
            row_scores = rows.topk(k, dim=1).values.mean(dim=1)
        per_scalar[name] = row_scores[:, None].expand_as(rows).reshape(scores.shape)
    units = build_units(parameter_shapes(model), "parameter")
    return _keep_best(units, units.reduce(per_scalar, lambda rows: rows[:, 0]), settings.budget)
