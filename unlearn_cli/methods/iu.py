"""`iu` (influence unlearning; Izzo et al. 2021, Koh & Liang 2017) with the WoodFisher inverse-Hessian
estimate (Singh & Alistarh 2020), as in Liu et al. 2024's code ("Model Sparsity Can Simplify Machine
Unlearning"): θ ← θ + α·H⁻¹v with v = (n_f / n)·(ḡ_f − ḡ_r), ḡ the mean cross-entropy gradient over the
forget / retain examples and n = n_f + n_r. The sign makes it a step up the forget loss and down the retain
loss (removing the forget examples' influence). H = λI + (1/N)·Σ gᵢgᵢᵀ over N per-example retain gradients,
inverted by the rank-1 (Sherman–Morrison) recursion started at H₀⁻¹ = I/λ:

    H⁻¹ₖ = H⁻¹ₖ₋₁ − uₖuₖᵀ / (N + gₖᵀuₖ),   uₖ = H⁻¹ₖ₋₁ gₖ,

kept matrix-free as the vectors uₖ over the masked (else all) parameter entries: memory N × P floats.
Training-free; with a mask only masked entries change.

Usage:
    unlearn apply --model m.safetensors --forget f.json --method iu --param num_samples=256 -o out.safetensors
"""

from __future__ import annotations

import torch

from unlearn_cli.cost import trained
from unlearn_cli.engine import restrict_to_mask
from unlearn_cli.errors import UserError, flag
from unlearn_cli.methods import register_method
from unlearn_cli.methods._common import batch_gradients
from unlearn_cli.method_configs import IUConfig

MEMORY_LIMIT_BYTES = 4 * 2**30  # the uₖ vectors


def selected_entries(model, mask) -> list[tuple[str, torch.Tensor]]:
    """(parameter name, bool selection) of every parameter with something to change (all entries without a mask)."""
    everything = mask is None
    selections = [(name, torch.ones_like(parameter, dtype=torch.bool) if everything else mask[name].to(parameter.device))
                  for name, parameter in model.named_parameters()]
    return [(name, selection) for name, selection in selections if bool(selection.any())]


def flatten(gradients: dict[str, torch.Tensor], entries) -> torch.Tensor:
    """The selected entries of a gradient dict as one vector [P]."""
    return torch.cat([gradients[name][selection] for name, selection in entries])


def mean_gradient(model, batches, entries) -> tuple[torch.Tensor, int]:
    """Mean per-example cross-entropy gradient over all batches (selected entries), and the example count."""
    total, count = None, 0
    for size, gradients in batch_gradients(model, batches):
        vector = flatten(gradients, entries) * size
        total = vector if total is None else total + vector
        count += size
    return total / count, count


def woodfisher_inverse_product(gradients, count: int, vector: torch.Tensor, damping: float) -> torch.Tensor:
    """H⁻¹·vector with H = λI + (1/N)·Σ gₖgₖᵀ over the N = `count` vectors `gradients` yields (rank-1 recursion)."""
    directions = torch.empty(count, vector.numel(), dtype=vector.dtype, device=vector.device)  # uₖ [N, P]
    denominators = torch.empty(count, dtype=vector.dtype, device=vector.device)  # N + gₖᵀuₖ
    for k, gradient in enumerate(gradients):
        previous, scale = directions[:k], denominators[:k]
        direction = gradient / damping - ((previous @ gradient) / scale) @ previous  # H⁻¹ₖ₋₁ gₖ
        directions[k] = direction
        denominators[k] = count + gradient @ direction
    return vector / damping - ((directions @ vector) / denominators) @ directions


@register_method("iu", work=lambda cfg, sizes: trained(sizes.forget + sizes.retain + min(cfg.num_samples, sizes.retain)))
def iu(model, data, mask, cfg: IUConfig):
    entries = selected_entries(model, mask)
    parameters = dict(model.named_parameters())
    size = sum(int(selection.sum()) for _, selection in entries)
    count = min(cfg.num_samples, len(data.retain))
    if count * size * 4 > MEMORY_LIMIT_BYTES:
        raise UserError(f"iu needs {count * size * 4 / 2**30:.1f} GiB for {count} samples × {size:,} parameters; "
                        f"lower {flag('num_samples', 'param')} or pass a --mask")

    def batches(indices, batch_size):
        return data.dataset.batches("train", indices, batch_size, device=data.device)

    with torch.enable_grad():
        forget_gradient, forget_count = mean_gradient(model, batches(data.forget, cfg.batch_size), entries)
        retain_gradient, retain_count = mean_gradient(model, batches(data.retain, cfg.batch_size), entries)
        vector = forget_count / (forget_count + retain_count) * (forget_gradient - retain_gradient)
        generator = torch.Generator().manual_seed(cfg.seed)
        samples = data.retain[torch.randperm(len(data.retain), generator=generator)[:count]]
        per_example = (flatten(gradients, entries) for _, gradients in batch_gradients(model, batches(samples, 1)))
        step = cfg.alpha * woodfisher_inverse_product(per_example, count, vector, cfg.damping)
    before = {name: parameter.detach().clone() for name, parameter in parameters.items()}
    with torch.no_grad():
        for (name, selection), change in zip(entries, step.split([int(selection.sum()) for _, selection in entries])):
            parameters[name][selection] += change
    restrict_to_mask(model, before, mask)
    return model
