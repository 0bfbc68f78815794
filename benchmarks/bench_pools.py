"""Time a pool of models trained, and unlearned, one at a time against the same pool stacked
(`train --seeds --stacked`, `apply --seeds --stacked`).

The Fashion-MNIST suite's model (a 2×1024 ReLU MLP, SGD lr 0.1, momentum 0.9, batch 128) on its 2,000-example
training subset, N models of seeds 0…N−1, the same epochs on both sides:
- training: one at a time with the loop `train` runs per seed (`engine.train_classifier`), and stacked
  (`unlearn_cli.stacked.train_stacked`: every model's parameters stacked, one vectorized forward/backward and
  one optimizer step for all);
- unlearning: DEL's finetune (`rft`) of each model with a mask of its own (30% of every tensor, drawn per seed)
  on the retain set of a 10% forget set, one at a time (the method's `run`) and stacked (the methods' loops run by
  `unlearn_cli.stacked.run_stacked`, each model's entries outside its mask written back after every step).
Model building, masks and data loading are outside the timed part on both sides. Prints models/hour of each and
the stacked ÷ sequential speed-up per N, on the CPU and, when one is visible, on the GPU. `--dataset synthetic`
times the same shapes (1×28×28, 10 classes) where Fashion-MNIST is not installed.

Usage:
    .venv/bin/python benchmarks/bench_pools.py [--models 8 32 128] [--epochs 1] [--threads 2] [--device cpu cuda]
    .venv/bin/python benchmarks/bench_pools.py --device cuda --models 64 --dataset synthetic
"""

from __future__ import annotations

import argparse
import copy
import time

import torch

from unlearn_cli.data import create_dataset
from unlearn_cli.engine import LoopSettings, seed_everything, train_classifier
from unlearn_cli.methods import UnlearnData, get_method, method_config
from unlearn_cli.models import create_model
from unlearn_cli.stacked import run_stacked, train_stacked

EXAMPLES = 2000


def build(count: int, data, device: torch.device) -> list[torch.nn.Module]:
    models = []
    for seed in range(count):
        seed_everything(seed)
        models.append(new_model(data).to(device))
    return models


def new_model(data) -> torch.nn.Module:
    return create_model("mlp", data.num_classes, data.input_shape, width=1024, depth=2)


def dataset(name: str):
    if name == "synthetic":
        return create_dataset("synthetic", channels=1, size=28, num_train=EXAMPLES, num_test=500)
    return create_dataset("fashion-mnist", train_subset=EXAMPLES)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(device: torch.device, work) -> float:
    synchronize(device)
    started = time.perf_counter()
    work()
    synchronize(device)
    return time.perf_counter() - started


def masks(models: list[torch.nn.Module]) -> list[dict[str, torch.Tensor]]:
    drawn = []
    for seed, model in enumerate(models):
        generator = torch.Generator().manual_seed(seed)
        drawn.append({name: (torch.rand(parameter.shape, generator=generator) < 0.3).to(parameter.device)
                      for name, parameter in model.named_parameters()})
    return drawn


def line(what: str, count: int, sequential: float, stacked: float) -> str:
    return (f"  {what} N = {count:4d}: one at a time {3600 * count / sequential:9,.0f} models/h ({sequential:6.1f} s), "
            f"stacked {3600 * count / stacked:9,.0f} models/h ({stacked:6.1f} s): stacked ÷ sequential "
            f"{sequential / stacked:.2f}×")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, nargs="+", default=[8, 32, 128])
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", nargs="+", default=["cpu", "cuda"])
    parser.add_argument("--dataset", choices=["fashion-mnist", "synthetic"], default="fashion-mnist")
    arguments = parser.parse_args()
    torch.set_num_threads(arguments.threads)
    settings = LoopSettings(epochs=arguments.epochs, lr=0.1, momentum=0.9)
    for name in arguments.device:
        if name == "cuda" and not torch.cuda.is_available():
            print("cuda: no GPU visible, skipped")
            continue
        device = torch.device(name)
        data = dataset(arguments.dataset).to(device)
        forget = torch.arange(0, EXAMPLES, 10)  # a 10% forget set
        label = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {arguments.threads} threads"
        print(f"{label}: 2×1024 MLP, {EXAMPLES:,} {arguments.dataset} images, {arguments.epochs} epoch(s) per model")
        measure(2, data, forget, settings, device)  # warm-up: the first runs of each loop set up kernels and memory
        for count in arguments.models:
            train, unlearn = measure(count, data, forget, settings, device)
            print(line("train", count, *train))
            print(line("rft  ", count, *unlearn))


def measure(count: int, data, forget: torch.Tensor, settings: LoopSettings, device: torch.device):
    """((sequential, stacked) seconds of training `count` models, the same of unlearning them with rft)."""
    models = build(count, data, device)
    sequential = timed(device, lambda: [train_classifier(model, data, None, settings, 128, seed, device)
                                        for seed, model in enumerate(models)])
    models = build(count, data, device)
    stacked = timed(device, lambda: train_stacked(models, data, None, settings, 128, list(range(count)), device))
    train = sequential, stacked

    unlearn_data = UnlearnData.split(data, forget, device=device, new_model=lambda: new_model(data))
    configs = [method_config("rft", {"epochs": settings.epochs, "seed": seed}) for seed in range(count)]
    selections = masks(models)
    rft = get_method("rft")
    parents = [copy.deepcopy(model) for model in models]
    sequential = timed(device, lambda: [rft.run(model, unlearn_data, mask, cfg)
                                        for model, mask, cfg in zip(models, selections, configs)])

    def unlearn_stacked() -> None:  # each model prepared (reset) by its own loop, then all loops at once
        loops = [rft.loop(model, unlearn_data, mask, cfg) for model, mask, cfg in zip(parents, selections, configs)]
        run_stacked(parents, lambda epoch: [loop.batches_for_epoch(epoch) for loop in loops], loops[0].settings,
                    loops[0].steps_per_epoch, device, masks=selections, always_trainable=loops[0].always_trainable)

    return train, (sequential, timed(device, unlearn_stacked))

if __name__ == "__main__":
    main()
