"""`finetune`: cross-entropy on the retain set with a cosine schedule (the classic baseline, e.g. Golatkar et al. 2020).

Usage:
    unlearn apply --model m.safetensors --forget f.json --method finetune --epochs 10 --lr 0.01 -o out.safetensors
"""

from __future__ import annotations

from unlearn_cli.engine import cross_entropy_loss
from unlearn_cli.methods import register_loop_method
from unlearn_cli.methods._common import epoch_batches, loop_work, method_loop
from unlearn_cli.method_configs import FinetuneConfig


@register_loop_method("finetune", stacks=True, work=lambda cfg, sizes: loop_work(cfg, sizes.retain))
def finetune(model, data, mask, cfg: FinetuneConfig):
    return method_loop(cfg, cross_entropy_loss, *epoch_batches(data, data.retain, cfg))
