"""`neggrad`: gradient ascent on the forget set (−cross-entropy), constant learning rate
(Golatkar et al. 2020; Kurmanji et al. 2023 call it NegGrad).

Usage:
    unlearn apply --model m.safetensors --forget f.json --method neggrad --epochs 5 --lr 0.01 -o out.safetensors
"""

from __future__ import annotations

from unlearn_cli.engine import cross_entropy_loss
from unlearn_cli.methods import register_loop_method
from unlearn_cli.methods._common import epoch_batches, loop_work, method_loop
from unlearn_cli.method_configs import NegGradConfig


def negative_cross_entropy(model, batch, info):
    loss, correct, count = cross_entropy_loss(model, batch, info)
    return -loss, correct, count


@register_loop_method("neggrad", work=lambda cfg, sizes: loop_work(cfg, sizes.forget))
def neggrad(model, data, mask, cfg: NegGradConfig):
    return method_loop(cfg, negative_cross_entropy, *epoch_batches(data, data.forget, cfg))
