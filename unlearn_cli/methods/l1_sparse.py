"""`l1-sparse`: CE(retain) + γ_t·‖θ‖₁ over the trainable parameters, γ_t = γ(1 − t/T), cosine schedule
(Liu et al. 2024, "Model Sparsity Can Simplify Machine Unlearning").

Usage:
    unlearn apply --model m.safetensors --forget f.json --method l1-sparse --param gamma=7e-5 -o out.safetensors
"""

from __future__ import annotations

from unlearn_cli.engine import cross_entropy_loss
from unlearn_cli.methods import register_loop_method
from unlearn_cli.methods._common import epoch_batches, loop_work, method_loop
from unlearn_cli.method_configs import L1SparseConfig


@register_loop_method("l1-sparse", work=lambda cfg, sizes: loop_work(cfg, sizes.retain))
def l1_sparse(model, data, mask, cfg: L1SparseConfig):
    def loss_fn(model, batch, info):
        loss, correct, count = cross_entropy_loss(model, batch, info)
        l1 = sum(parameter.abs().sum() for parameter in model.parameters() if parameter.requires_grad)
        return loss + cfg.gamma * (1 - info.progress) * l1, correct, count

    return method_loop(cfg, loss_fn, *epoch_batches(data, data.retain, cfg))
