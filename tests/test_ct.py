"""`ct` (Conv Transpose): the transpose on a known kernel, the mask on it, and the refusal of a model it cannot run
on."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from conftest import run_cli
from unlearn_cli.errors import UserError
from unlearn_cli.methods.ct import transpose_kernels


def test_the_transpose_swaps_the_two_spatial_axes_of_every_conv_kernel():
    model = nn.Sequential(nn.Conv2d(1, 1, 2, bias=True), nn.ReLU(), nn.Conv2d(1, 2, 3, bias=False),
                          nn.Flatten(), nn.LazyLinear(3))
    model(torch.zeros(1, 1, 5, 5))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]]))
        model[2].weight.copy_(torch.arange(18.0).reshape(2, 1, 3, 3))
    bias, head = model[0].bias.detach().clone(), model[4].weight.detach().clone()
    transpose_kernels(model, None)
    assert model[0].weight.tolist() == [[[[1.0, 3.0], [2.0, 4.0]]]]
    assert model[2].weight[1, 0].tolist() == [[9.0, 12.0, 15.0], [10.0, 13.0, 16.0], [11.0, 14.0, 17.0]]
    assert torch.equal(model[0].bias, bias) and torch.equal(model[4].weight, head)  # only conv kernels move


def test_with_a_mask_only_masked_entries_take_the_transposed_values():
    conv = nn.Conv2d(1, 1, 2, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]]))
    mask = {"weight": torch.tensor([[[[False, True], [False, False]]]])}
    transpose_kernels(nn.Sequential(conv), {"0." + key: value for key, value in mask.items()})
    assert conv.weight.tolist() == [[[[1.0, 3.0], [3.0, 4.0]]]]


def test_a_model_without_convolutions_or_with_a_non_square_kernel_is_refused():
    with pytest.raises(UserError, match="^method ct transposes 2-D convolution kernels and this model has none"):
        transpose_kernels(nn.Sequential(nn.Linear(4, 2)), None)
    with pytest.raises(UserError, match=r"^method ct: 0 has a 1×3 kernel, which a transpose cannot keep in shape"):
        transpose_kernels(nn.Sequential(nn.Conv2d(1, 1, (1, 3))), None)


def test_apply_ct_on_an_mlp_is_one_line_and_writes_nothing(tiny_run, tmp_path):
    output = tmp_path / "ct.safetensors"
    result = run_cli("apply", "-m", tiny_run["original"], "-f", tiny_run["forget"], "--method", "ct", "-q",
                     "-o", output)
    assert result.exit_code == 1 and result.stderr.count("\n") == 1, result.output
    assert result.stderr.startswith("error: method ct transposes 2-D convolution kernels and this model has none")
    assert not output.exists()
