"""Architecture registry: each factory takes (num_classes, input_shape, **options) and returns an nn.Module.

A model is sized before it is built: its options are checked (type and range), then it is constructed
on PyTorch's `meta` device, which allocates nothing, and run on one meta example to count its
parameters and activations; only a model within the limits of docs/limits.md is built for real.

Usage:
    model = create_model("resnet18", num_classes=10, input_shape=(3, 32, 32))
    size = measure_model("mlp", 10, (1, 8, 8), {"width": 30000})   # scalars, tensors, activations, layout
    model = size.build()                                            # the same model, for real
    head = classifier_head_names(model)   # parameter names of the final linear layer
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.modules import module as torch_module
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from unlearn_cli.config import check_options, check_range
from unlearn_cli.errors import UserError
from unlearn_cli.limits import check_size, limit
from unlearn_cli.registry import Registry

MODELS: Registry = Registry("model")

from unlearn_cli.models import convnets, vit  # noqa: E402,F401  (registers the models)


def list_models() -> list[str]:
    return MODELS.names()


@dataclass(frozen=True)
class ModelSize:
    scalars: int  # parameter and buffer scalars (what a checkpoint stores)
    tensors: int  # parameter and buffer tensors
    activations: int  # scalars of the tensors one example's forward pass creates (views not counted)
    layout: dict[str, tuple[tuple[int, ...], torch.dtype]]  # state_dict name -> (shape, dtype)
    name: str  # what was measured, so that it can be built without measuring again
    num_classes: int
    input_shape: tuple[int, int, int]
    options: dict

    def build(self) -> nn.Module:
        """The measured model, built for real (freshly initialized)."""
        return _factory(self.name)(num_classes=self.num_classes, input_shape=self.input_shape, **self.options)


class _TooLarge(Exception):
    pass


class _CountActivations(TorchDispatchMode):
    """Adds up the scalars of every tensor an operation creates; stops once past `bound`."""

    def __init__(self, bound: int):
        super().__init__()
        self.bound, self.total = bound, 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if not any(result.alias_info is not None for result in func._schema.returns):  # views allocate nothing
            self.total += sum(t.numel() for t in tree_leaves(out) if isinstance(t, torch.Tensor))
        if self.total > self.bound:
            raise _TooLarge
        return out


def _factory(name: str):
    try:
        return MODELS.get(name)
    except ValueError as error:
        raise UserError(str(error)) from None


def _checked_options(name: str, num_classes: int, input_shape, options: dict, where: str) -> dict:
    factory = _factory(name)
    accepted = [p for p in inspect.signature(factory).parameters if p not in ("num_classes", "input_shape")]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise UserError(f"{where}model {name!r} has no option {', '.join(unknown)}; its options are: "
                        f"{', '.join(accepted) or 'none'}")
    check_range("num_classes", num_classes, f"{where}num_classes")
    if not (len(input_shape) == 3 and all(isinstance(size, int) and not isinstance(size, bool) and size >= 1
                                          for size in input_shape)):
        raise UserError(f"{where}input shape {list(input_shape)} must be three positive integers "
                        f"[channels, height, width]")
    check_size(math.prod(input_shape), "input_elements", where.rstrip(": ") or "model",
               f"input shape {list(input_shape)}:")
    return check_options(factory, options, f"{where}model option")


def measure_model(name: str, num_classes: int, input_shape, options: dict, where: str = "") -> ModelSize:
    """Build `name` on the meta device (nothing allocated) and count what the real model would need.

    Construction stops early once it has registered twice the limits and more (parameters replaced while
    a model is assembled count twice), so a request for a billion-wide network costs nothing. Over a limit
    is a UserError; `where` prefixes its message (a checkpoint's path).
    """
    options = _checked_options(name, num_classes, input_shape, options, where)
    max_scalars, max_tensors = limit("parameters"), limit("tensors")
    registered = {"scalars": 0, "tensors": 0}

    def count(module, name, tensor):
        if tensor is not None:
            registered["scalars"] += tensor.numel()
            registered["tensors"] += 1
            if registered["scalars"] > 2 * max_scalars + 10**6 or registered["tensors"] > 2 * max_tensors + 100:
                raise _TooLarge
        return None

    what = f"{where}model {name} {options or ''}".rstrip()
    handles = [torch_module.register_module_parameter_registration_hook(count),
               torch_module.register_module_buffer_registration_hook(count)]
    try:
        with torch.device("meta"):
            model = _factory(name)(num_classes=num_classes, input_shape=tuple(input_shape), **options)
    except _TooLarge:
        raise UserError(f"{what} needs more than {max_scalars:,} parameter scalars or {max_tensors:,} tensors; "
                        f"choose smaller options (the limits are in docs/limits.md)") from None
    except (TypeError, ValueError, RuntimeError) as error:
        detail = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise UserError(f"{what}: cannot be built ({detail})") from None
    finally:
        for handle in handles:
            handle.remove()
    state = model.state_dict()
    scalars, tensors = sum(t.numel() for t in state.values()), len(state)
    if scalars > max_scalars or tensors > max_tensors:
        raise UserError(f"{what} has {scalars:,} parameter scalars in {tensors:,} tensors, beyond the limit of "
                        f"{max_scalars:,} scalars / {max_tensors:,} tensors; choose smaller options")
    counter = _CountActivations(limit("activations"))
    try:
        with counter, torch.no_grad():
            model.eval()(torch.empty(1, *input_shape, device="meta"))
    except _TooLarge:
        raise UserError(f"{what}: one example's forward pass needs more than {limit('activations'):,} activation "
                        f"scalars; choose smaller options or a smaller input") from None
    except (TypeError, ValueError, RuntimeError, NotImplementedError) as error:
        raise UserError(f"{what}: does not run on input shape {list(input_shape)} "
                        f"({str(error).splitlines()[0] if str(error) else type(error).__name__})") from None
    layout = {key: (tuple(tensor.shape), tensor.dtype) for key, tensor in state.items()}
    return ModelSize(scalars=scalars, tensors=tensors, activations=counter.total, layout=layout, name=name,
                     num_classes=num_classes, input_shape=tuple(input_shape), options=options)


def create_model(name: str, num_classes: int, input_shape: tuple[int, int, int], **options) -> nn.Module:
    """Build architecture `name` for the data's classes and input shape, after sizing it with `measure_model`;
    bad names, options or sizes are a UserError."""
    return measure_model(name, num_classes, input_shape, options).build()


def classifier_head_names(model: nn.Module) -> list[str]:
    """Names of the parameters of the last nn.Linear in the model: the classifier head."""
    last = None
    for module_name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            last = module_name
    if last is None:
        return []
    return [f"{last}.{name}" for name, _ in model.get_submodule(last).named_parameters()]
