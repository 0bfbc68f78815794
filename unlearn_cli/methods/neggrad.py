"""`neggrad`: gradient ascent on the forget set (−cross-entropy), constant learning rate
(Golatkar et al. 2020; Kurmanji et al. 2023 call it NegGrad).

Usage:
    unlearn apply --model m.safetensors --forget f.json --method neggrad --epochs 5 --lr 0.01 -o out.safetensors
"""

from __future__ import annotations

from dataclasses import dataclass

from unlearn_cli.engine import cross_entropy_loss
from unlearn_cli.methods import register_loop_method
from unlearn_cli.methods._common import UpdateConfig, epoch_batches, loop_work, method_loop


@dataclass
class NegGradConfig(UpdateConfig):
    epochs: int = 5  # passes over the forget set
    lr: float = 0.003  # ascent diverges quickly: keep it small
    schedule: str = "constant"


def negative_cross_entropy(model, batch, info):
    loss, correct, count = cross_entropy_loss(model, batch, info)
    return -loss, correct, count


@register_loop_method("neggrad", NegGradConfig, "gradient ascent (-CE) on the forget set, constant lr",
                      work=lambda cfg, sizes: loop_work(cfg, sizes.forget))
def neggrad(model, data, mask, cfg: NegGradConfig):
    return method_loop(cfg, negative_cross_entropy, *epoch_batches(data, data.forget, cfg))
