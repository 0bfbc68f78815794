"""MLP, small CNN and the ResNets (CIFAR-variant ResNet-18, torchvision ResNet-50)."""

from __future__ import annotations

import math

import torch
from torch import nn

from unlearn_cli.models import MODELS


@MODELS.register("mlp")
def mlp(num_classes: int, input_shape: tuple[int, int, int], width: int = 1024, depth: int = 2) -> nn.Module:
    """`depth` hidden ReLU layers of `width` units; 2×1024 is the over-parameterized CPU benchmark model."""
    layers: list[nn.Module] = [nn.Flatten()]
    features = math.prod(input_shape)
    for _ in range(depth):
        layers += [nn.Linear(features, width), nn.ReLU()]
        features = width
    layers.append(nn.Linear(features, num_classes))
    return nn.Sequential(*layers)


@MODELS.register("cnn")
def cnn(num_classes: int, input_shape: tuple[int, int, int], width: int = 16, depth: int = 4) -> nn.Module:
    """`depth` 3×3 conv-BN-ReLU layers (width doubling every two, max-pool after each pair), then a linear head."""
    layers: list[nn.Module] = []
    channels, size = input_shape[0], input_shape[1]
    for index in range(depth):
        out = width * 2 ** (index // 2)
        layers += [nn.Conv2d(channels, out, 3, padding=1, bias=False), nn.BatchNorm2d(out), nn.ReLU()]
        if index % 2 == 1 and size >= 4:
            layers.append(nn.MaxPool2d(2))
            size //= 2
        channels = out
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, num_classes)]
    return nn.Sequential(*layers)


@MODELS.register("resnet18")
def resnet18(num_classes: int, input_shape: tuple[int, int, int], width: int = 64) -> nn.Module:
    """ResNet-18, CIFAR variant (He et al. 2016): 3×3 stride-1 first conv and no max-pool."""
    model = _resnet18_of_width(width, num_classes)
    model.conv1 = nn.Conv2d(input_shape[0], model.conv1.out_channels, 3, stride=1, padding=1, bias=False)
    model.maxpool = nn.Identity()
    return model


def _resnet18_of_width(width: int, num_classes: int) -> nn.Module:
    """torchvision's ResNet-18 layout with stages of width, 2×, 4×, 8× channels (64 is the standard net)."""
    from torchvision.models import resnet  # imported on use: torchvision's import is slow

    model = resnet.ResNet(resnet.BasicBlock, [2, 2, 2, 2], num_classes=num_classes, width_per_group=64)
    return _with_width(model, resnet.BasicBlock, [2, 2, 2, 2], width, num_classes)


def _with_width(model: nn.Module, block, blocks: list[int], width: int, num_classes: int) -> nn.Module:
    """torchvision ResNet `model` with its first conv, stages and head replaced by ones of width, 2×, 4×, 8× channels
    (`blocks` blocks per stage), in the order torchvision builds them."""
    model.inplanes = width
    model.conv1 = nn.Conv2d(3, width, 7, 2, 3, bias=False)
    model.bn1 = nn.BatchNorm2d(width)
    model.layer1 = model._make_layer(block, width, blocks[0])
    model.layer2 = model._make_layer(block, width * 2, blocks[1], stride=2)
    model.layer3 = model._make_layer(block, width * 4, blocks[2], stride=2)
    model.layer4 = model._make_layer(block, width * 8, blocks[3], stride=2)
    model.fc = nn.Linear(width * 8 * block.expansion, num_classes)
    return model


@MODELS.register("resnet50")
def resnet50(num_classes: int, input_shape: tuple[int, int, int], width: int = 64) -> nn.Module:
    """torchvision's ResNet-50 (the paper's ImageNet-100 model), first conv adapted to the input channels; `width`
    scales its stages as resnet18's does (64, the default, is torchvision's network)."""
    model = _resnet50_of_width(width, num_classes)
    if input_shape[0] != 3:
        model.conv1 = nn.Conv2d(input_shape[0], width, 7, stride=2, padding=3, bias=False)
    return model


def _resnet50_of_width(width: int, num_classes: int) -> nn.Module:
    """torchvision's ResNet-50 layout with bottleneck stages of width, 2×, 4×, 8× channels, built and initialized as
    torchvision does it: at width 64 the same network drawn from the same random numbers as `resnet.resnet50()`."""
    from torchvision.models import resnet

    with torch.device("meta"):  # the skeleton, allocating nothing; every module with parameters is replaced below
        model = resnet.ResNet(resnet.Bottleneck, [3, 4, 6, 3], num_classes=num_classes)
    model = _with_width(model, resnet.Bottleneck, [3, 4, 6, 3], width, num_classes)
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.constant_(module.weight, 1)
            nn.init.constant_(module.bias, 0)
    return model
