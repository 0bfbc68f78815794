"""Units of selection: how parameter scalars are grouped into the things a mask takes or leaves whole.

Every granularity cuts the model's parameters into `UnitGroup`s. A group views each of its member
tensors as a matrix [count, columns]: row i of every member together is unit i. That single shape
covers the three granularities:

- `parameter`: one group per tensor, a unit per scalar (tensor viewed as [numel, 1]);
- `neuron`: a parameter with ndim >= 2 sliced along dim 0 (an output row of a linear layer, an output
  channel of a convolution) together with the matching element of the same module's bias
  (`X.weight[i]` + `X.bias[i]`); 1-D parameters (normalization layers, lone biases) and 0-D ones are
  units of their own, element by element;
- `layer`: all parameters owned directly by one module form one unit (Deepest / Shallowest).

The global unit order (groups in `named_parameters()` order, rows in order) is the fixed order that
breaks ties between equal scores.

Usage:
    units = build_units(parameter_shapes(model), "neuron")
    scores = units.reduce(scalar_scores, lambda rows: top_k_mean(rows, 0.1))   # [units]
    mask = units.mask(selected)                                                # bool [units] -> Mask
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from unlearn_cli.localize.base import Mask
from unlearn_cli.registry import Registry

Shapes = dict[str, torch.Size]  # parameter name -> shape, in named_parameters() order
GRANULARITIES: Registry = Registry("granularity")


def parameter_shapes(model: nn.Module) -> Shapes:
    return {name: parameter.shape for name, parameter in model.named_parameters()}


@dataclass(frozen=True)
class UnitGroup:
    names: tuple[str, ...]  # member tensors
    shapes: tuple[torch.Size, ...]
    count: int  # units in the group

    @property
    def columns(self) -> tuple[int, ...]:  # scalars each member contributes to one unit
        return tuple(math.prod(shape) // self.count if self.count else 0 for shape in self.shapes)

    @property
    def size(self) -> int:  # scalars per unit
        return sum(self.columns)

    def rows(self, values: dict[str, torch.Tensor]) -> torch.Tensor:
        """[count, size]: unit i's values in row i (members side by side)."""
        parts = [values[name].reshape(self.count, -1) for name in self.names]
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)

    def mask(self, selected: torch.Tensor) -> Mask:
        """bool [count] -> a bool tensor per member, True on the selected units."""
        return {name: selected[:, None].expand(self.count, columns).reshape(shape).clone()
                for name, shape, columns in zip(self.names, self.shapes, self.columns)}


class Units:
    """All units of a model at one granularity, in the fixed global order."""

    def __init__(self, groups: list[UnitGroup]):
        self.groups = groups
        counts = torch.tensor([group.count for group in groups], dtype=torch.long)
        self.offsets = torch.cat([torch.zeros(1, dtype=torch.long), counts.cumsum(0)])  # group g: [offsets[g], offsets[g+1])
        self.sizes = torch.cat([torch.full((group.count,), group.size, dtype=torch.long) for group in groups])

    def __len__(self) -> int:
        return int(self.offsets[-1])

    @property
    def total(self) -> int:  # scalars
        return int(self.sizes.sum())

    def reduce(self, values: dict[str, torch.Tensor], reduce_rows: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """One float64 score per unit [units]: `reduce_rows` maps each group's [count, size] to [count]."""
        return torch.cat([reduce_rows(group.rows(values).detach()).double().cpu() for group in self.groups])

    def mask(self, selected: torch.Tensor) -> Mask:
        """bool [units] -> Mask over every parameter of the model."""
        selected = selected.cpu()
        mask: Mask = {}
        for index, group in enumerate(self.groups):
            mask.update(group.mask(selected[self.offsets[index] : self.offsets[index + 1]]))
        return mask

    def locate(self, unit: int) -> tuple[UnitGroup, int]:
        """The group holding global unit `unit`, and the unit's row inside it."""
        index = int(torch.searchsorted(self.offsets, torch.tensor(unit), right=True)) - 1
        return self.groups[index], unit - int(self.offsets[index])


def top_k_mean(rows: torch.Tensor, topk: float) -> torch.Tensor:
    """[count, size] -> [count]: mean of each row's k largest values, k = max(1, ceil(topk × size)) (DEL)."""
    if rows.shape[1] == 1:
        return rows[:, 0]
    k = max(1, math.ceil(topk * rows.shape[1]))
    return rows.topk(min(k, rows.shape[1]), dim=1, sorted=False).values.double().mean(dim=1)  # select in float32, average in float64


def build_units(shapes: Shapes, granularity: str) -> Units:
    return Units(GRANULARITIES.get(granularity)(shapes))


def list_granularities() -> list[str]:
    return GRANULARITIES.names()


def _elements(name: str, shape: torch.Size) -> UnitGroup:
    return UnitGroup((name,), (shape,), math.prod(shape))


@GRANULARITIES.register("parameter")
def parameter_units(shapes: Shapes) -> list[UnitGroup]:
    """Every scalar is a unit (SalLoc, Fan et al. 2023)."""
    return [_elements(name, shape) for name, shape in shapes.items()]


@GRANULARITIES.register("neuron")
def neuron_units(shapes: Shapes) -> list[UnitGroup]:
    """Output rows / channels with their bias element; 1-D and 0-D parameters element by element (DEL)."""
    bias_of = {}  # weight name -> the bias joined to its rows
    for name, shape in shapes.items():
        module, _, leaf = name.rpartition(".")
        bias = f"{module}.bias" if module else "bias"
        if leaf == "weight" and len(shape) >= 2 and shapes.get(bias) == torch.Size([shape[0]]):
            bias_of[name] = bias
    joined = set(bias_of.values())
    groups = []
    for name, shape in shapes.items():
        if name in joined:
            continue
        if name in bias_of:
            groups.append(UnitGroup((name, bias_of[name]), (shape, shapes[bias_of[name]]), shape[0]))
        elif len(shape) >= 2:
            groups.append(UnitGroup((name,), (shape,), shape[0]))
        else:
            groups.append(_elements(name, shape))
    return groups


@GRANULARITIES.register("layer")
def layer_units(shapes: Shapes) -> list[UnitGroup]:
    """All parameters owned directly by one module are one unit (Deepest / Shallowest, Goel et al. 2022)."""
    modules: dict[str, list[str]] = {}
    for name in shapes:
        modules.setdefault(name.rpartition(".")[0], []).append(name)
    return [UnitGroup(tuple(names), tuple(shapes[n] for n in names), 1) for names in modules.values()]
