"""Every registered model: forward + backward on an image shape, head detection, option errors."""

import pytest
import torch

from presets import tiny_model
from unlearn_cli.errors import UserError
from unlearn_cli.models import classifier_head_names, create_model, list_models


@pytest.mark.parametrize("name", list_models())
def test_forward_backward(name):
    model = tiny_model(name, num_classes=7, input_shape=(3, 8, 8))
    inputs = torch.randn(2, 3, 8, 8)
    logits = model(inputs)
    assert logits.shape == (2, 7)
    torch.nn.functional.cross_entropy(logits, torch.tensor([0, 6])).backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None for g in grads)
    assert any(float(g.abs().sum()) > 0 for g in grads)
    head = classifier_head_names(model)
    parameters = dict(model.named_parameters())
    assert parameters[head[0]].shape[0] == 7  # the head produces the class logits


@pytest.mark.parametrize("channels", [1, 5])
@pytest.mark.parametrize("name", list_models())
def test_adapts_to_channels(name, channels):
    model = tiny_model(name, num_classes=3, input_shape=(channels, 8, 8)).eval()
    assert model(torch.randn(1, channels, 8, 8)).shape == (1, 3)


def test_resnet18_is_the_cifar_variant():
    model = create_model("resnet18", 10, (3, 32, 32))
    assert model.conv1.kernel_size == (3, 3) and model.conv1.stride == (1, 1)
    assert isinstance(model.maxpool, torch.nn.Identity)
    assert sum(p.numel() for p in model.parameters()) == 11_173_962  # the standard CIFAR ResNet-18 size


@pytest.mark.slow
@pytest.mark.parametrize("channels", [3, 1])
def test_resnet50_at_its_default_width_is_torchvision_s(channels):
    # the same modules drawn from the same random numbers as torchvision's resnet50(), so a width option changed no
    # default network; grey images get a first conv of their own
    from torchvision.models import resnet

    torch.manual_seed(5)
    expected = resnet.resnet50(weights=None, num_classes=7)
    if channels != 3:
        expected.conv1 = torch.nn.Conv2d(channels, 64, 7, stride=2, padding=3, bias=False)
    expected_random_state = torch.random.get_rng_state()
    torch.manual_seed(5)
    model = create_model("resnet50", 7, (channels, 32, 32))
    assert torch.equal(torch.random.get_rng_state(), expected_random_state)  # what is drawn next is unchanged too
    assert str(model) == str(expected)
    state, expected_state = model.state_dict(), expected.state_dict()
    assert list(state) == list(expected_state)
    assert all(torch.equal(state[key], expected_state[key]) for key in state)


def test_resnet50_width_scales_every_stage():
    model = tiny_model("resnet50", num_classes=10, input_shape=(3, 8, 8), width=4)
    assert [model.get_submodule(f"layer{stage}")[0].conv3.out_channels for stage in (1, 2, 3, 4)] == [16, 32, 64, 128]
    assert model.conv1.out_channels == 4 and model.fc.in_features == 128


def test_unknown_model_and_option_are_user_errors():
    with pytest.raises(UserError, match="unknown model 'lenet'; choose one of: mlp"):
        create_model("lenet", 10, (1, 8, 8))
    with pytest.raises(UserError, match="model 'mlp' has no option colour; its options are: width, depth"):
        create_model("mlp", 10, (1, 8, 8), colour=3)
