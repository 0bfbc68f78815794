"""`msg` (the second-placed entry of the NeurIPS 2023 machine unlearning challenge, as ported with its competition
settings in Deep Unlearn, Cadet et al. 2024, github.com/xcadet/deepunlearn `munl/unlearning/kgltop2.py`):

1. in every layer it re-initializes (the conv weights; a model without convolutions: the linear weights, an
   adaptation — localize/msg.py), select the share `init_rate` (0.3) of the weights with the smallest
   |∇CE(retain sample) − ∇CE(forget set)|, the retain sample as large as the forget set (seeded);
2. re-initialize the selected weights, Kaiming normal with fan-out (std √2 / √fan_out);
3. finetune on the retain set with cross-entropy: the other weights of those layers train at `kept_rate` (0.1) ×
   the learning rate (their gradient scaled, as the entry does; weight decay unscaled), every other parameter —
   linear layers, normalization layers, biases — at the full rate. SGD, momentum 0.9, weight decay 5e-4, batch 64,
   lr 0.001 for 5 epochs, rising linearly over the first half of the steps and falling over the second (the
   entry's values for ResNet-18 at 32×32; its schedule steps once an epoch, this loop's every batch).

It owns its selection: it changes parameters outside any mask (a given mask is ignored, with a note). For MSG's
selection as a mask that other methods run (`rft`, at DEL's budget), use `localize --strategy msg`. The entry's
ResNet-18 has no conv biases; here a conv bias is kept and trains at the full rate.

Usage:
    unlearn apply --model cnn.safetensors --forget f.json --method msg -o out.safetensors
"""

from __future__ import annotations

import torch

from unlearn_cli.cost import Work, trained
from unlearn_cli.data.splits import retain_sample
from unlearn_cli.engine import cross_entropy_loss
from unlearn_cli.localize.msg import contrast_gradient, entry_counts, reinitialized_weights, smallest_share
from unlearn_cli.methods import register_loop_method
from unlearn_cli.methods._common import epoch_batches, loop_work, method_loop
from unlearn_cli.method_configs import MSGConfig


def msg_work(cfg: MSGConfig, sizes) -> Work:
    """The gradient contrast (the forget set and a retain sample as large, each forwarded and back-propagated once)
    and the finetuning on the retain set."""
    return trained(sizes.forget + min(sizes.forget, sizes.retain)) + loop_work(cfg, sizes.retain)


@torch.no_grad()
def reinitialize(layers: dict, selected: dict[str, torch.Tensor], seed: int) -> None:
    """The selected weights of each layer take fresh Kaiming-normal (fan-out, ReLU gain) values, seeded."""
    generator = torch.Generator().manual_seed(seed)
    for name, module in layers.items():
        fresh = torch.nn.init.kaiming_normal_(torch.empty(module.weight.shape), mode="fan_out", nonlinearity="relu",
                                              generator=generator)
        chosen = selected[name].to(module.weight.device)
        module.weight.copy_(torch.where(chosen, fresh.to(module.weight.device, module.weight.dtype), module.weight))


@register_loop_method("msg", uses_mask=False, work=msg_work)
def msg(model, data, mask, cfg: MSGConfig):
    layers = reinitialized_weights(model)

    def batches(indices):
        return data.dataset.batches("train", indices, cfg.batch_size, device=data.device)

    sample = retain_sample(data.dataset.num_train, data.forget, cfg.seed, len(data.forget))
    with torch.enable_grad():
        gradient = contrast_gradient(model, batches(data.forget), batches(sample))
    selected = smallest_share(gradient, entry_counts(layers, cfg.init_rate))
    reinitialize(layers, selected, cfg.seed)
    scale = {name: torch.where(selected[name], 1.0, cfg.kept_rate) for name in layers}
    return method_loop(cfg, cross_entropy_loss, *epoch_batches(data, data.retain, cfg), gradient_scale=scale)
