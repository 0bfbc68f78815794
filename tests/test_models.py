"""Every registered model: forward + backward on its dataset's shape, head detection, option errors."""

import pytest
import torch

from unlearn_cli.errors import UserError
from unlearn_cli.models import classifier_head_names, create_model, list_models

# Tiny options per model so the whole registry runs in seconds on a CPU.
TINY = {
    "mlp": ({"width": 16}, (1, 8, 8)),
    "cnn": ({"width": 4}, (1, 8, 8)),
    "resnet18": ({"width": 4}, (3, 8, 8)),
    "resnet50": ({}, (3, 32, 32)),
    "vit": ({"dim": 16, "depth": 1, "heads": 2, "mlp_dim": 16, "patch": 4, "dim_head": 8}, (3, 8, 8)),
}


def test_every_model_has_tiny_options():
    assert set(TINY) == set(list_models())


@pytest.mark.parametrize("name", list_models())
def test_forward_backward(name):
    options, shape = TINY[name]
    torch.manual_seed(0)
    model = create_model(name, num_classes=7, input_shape=shape, **options)
    inputs = torch.randn(2, *shape)
    logits = model(inputs)
    assert logits.shape == (2, 7)
    torch.nn.functional.cross_entropy(logits, torch.tensor([0, 6])).backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None for g in grads)
    assert any(float(g.abs().sum()) > 0 for g in grads)
    head = classifier_head_names(model)
    parameters = dict(model.named_parameters())
    assert parameters[head[0]].shape[0] == 7  # the head produces the class logits


@pytest.mark.parametrize("name", list_models())
def test_adapts_to_channels(name):
    options, (_, height, width) = TINY[name]
    model = create_model(name, num_classes=3, input_shape=(5, height, width), **options).eval()
    assert model(torch.randn(1, 5, height, width)).shape == (1, 3)


def test_resnet18_is_the_cifar_variant():
    model = create_model("resnet18", 10, (3, 32, 32))
    assert model.conv1.kernel_size == (3, 3) and model.conv1.stride == (1, 1)
    assert isinstance(model.maxpool, torch.nn.Identity)
    assert sum(p.numel() for p in model.parameters()) == 11_173_962  # the standard CIFAR ResNet-18 size


def test_unknown_model_and_option_are_user_errors():
    with pytest.raises(UserError, match="unknown model 'lenet'; choose one of: mlp"):
        create_model("lenet", 10, (1, 8, 8))
    with pytest.raises(UserError, match="model 'mlp' has no option colour; its options are: width, depth"):
        create_model("mlp", 10, (1, 8, 8), colour=3)
