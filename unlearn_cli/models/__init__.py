"""Architecture registry: each factory takes (num_classes, input_shape, **options) and returns an nn.Module.

Usage:
    model = create_model("resnet18", num_classes=10, input_shape=(3, 32, 32))
    head = classifier_head_names(model)   # parameter names of the final linear layer
"""

from __future__ import annotations

import inspect

from torch import nn

from unlearn_cli.errors import UserError
from unlearn_cli.registry import Registry

MODELS: Registry = Registry("model")

from unlearn_cli.models import convnets, vit  # noqa: E402,F401  (registers the models)


def list_models() -> list[str]:
    return MODELS.names()


def create_model(name: str, num_classes: int, input_shape: tuple[int, int, int], **options) -> nn.Module:
    """Build architecture `name` for the data's classes and input shape; bad names/options are a UserError."""
    try:
        factory = MODELS.get(name)
    except ValueError as error:
        raise UserError(str(error)) from None
    accepted = [p for p in inspect.signature(factory).parameters if p not in ("num_classes", "input_shape")]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise UserError(f"model {name!r} has no option {', '.join(unknown)}; its options are: {', '.join(accepted) or 'none'}")
    return factory(num_classes=num_classes, input_shape=tuple(input_shape), **options)


def classifier_head_names(model: nn.Module) -> list[str]:
    """Names of the parameters of the last nn.Linear in the model: the classifier head."""
    last = None
    for module_name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            last = module_name
    if last is None:
        return []
    return [f"{last}.{name}" for name, _ in model.get_submodule(last).named_parameters()]
