"""`neggrad+`: β·CE(retain) − (1−β)·CE(forget) on paired batches, forget batches cycled, constant lr
(Kurmanji et al. 2023, "Towards Unbounded Machine Unlearning", NegGrad+).

Usage:
    unlearn apply --model m.safetensors --forget f.json --method neggrad+ --param beta=0.99 -o out.safetensors
"""

from __future__ import annotations

from torch import nn

from unlearn_cli.cost import Work, examples_in_steps, loop_steps, trained

from unlearn_cli.engine import cycle
from unlearn_cli.methods import register_loop_method
from unlearn_cli.methods._common import SetSizes, epoch_batches, method_loop
from unlearn_cli.method_configs import NegGradPlusConfig


def neggrad_plus_work(cfg: NegGradPlusConfig, sizes: SetSizes) -> Work:
    """Every step trains on a retain batch and on the next batch of the cycled forget set."""
    steps = loop_steps(sizes.retain, cfg.batch_size, cfg.epochs, cfg.max_steps)
    return trained(examples_in_steps(sizes.retain, cfg.batch_size, steps)
                   + examples_in_steps(sizes.forget, cfg.batch_size, steps))


@register_loop_method("neggrad+", work=neggrad_plus_work)
def neggrad_plus(model, data, mask, cfg: NegGradPlusConfig):
    retain_batches, steps_per_epoch = epoch_batches(data, data.retain, cfg)
    forget_batches = cycle(epoch_batches(data, data.forget, cfg, seed_offset=1)[0])

    def loss_fn(model, batch, info):
        (retain_inputs, retain_labels), (forget_inputs, forget_labels) = batch
        logits = model(retain_inputs)
        retain_loss = nn.functional.cross_entropy(logits, retain_labels)
        forget_loss = nn.functional.cross_entropy(model(forget_inputs), forget_labels)
        loss = cfg.beta * retain_loss - (1 - cfg.beta) * forget_loss
        return loss, int((logits.argmax(1) == retain_labels).sum()), len(retain_labels)

    return method_loop(cfg, loss_fn, lambda epoch: zip(retain_batches(epoch), forget_batches), steps_per_epoch)
