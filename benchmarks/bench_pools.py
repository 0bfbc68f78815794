"""Time a pool of models trained one at a time against the same pool trained stacked (`train --seeds --stacked`).

The Fashion-MNIST suite's model (a 2×1024 ReLU MLP, SGD lr 0.1, momentum 0.9, batch 128) on its 2,000-example
training subset, N models of seeds 0…N−1, the same epochs on both sides: one at a time with the training loop
`train` runs per seed (`engine.train_classifier`), and stacked (`unlearn_cli.stacked.train_stacked`: every
model's parameters stacked, one vectorized forward/backward and one optimizer step for all). Model building and
data loading are outside the timed part on both sides. Prints models/hour of each and the stacked ÷ sequential
speed-up per N, on the CPU and, when one is visible, on the GPU.

Usage:
    .venv/bin/python benchmarks/bench_pools.py [--models 8 32 128] [--epochs 1] [--threads 2] [--device cpu cuda]
"""

from __future__ import annotations

import argparse
import time

import torch

from unlearn_cli.data import create_dataset
from unlearn_cli.engine import LoopSettings, seed_everything, train_classifier
from unlearn_cli.models import create_model
from unlearn_cli.stacked import train_stacked


def build(count: int, data, device: torch.device) -> list[torch.nn.Module]:
    models = []
    for seed in range(count):
        seed_everything(seed)
        models.append(create_model("mlp", data.num_classes, data.input_shape, width=1024, depth=2).to(device))
    return models


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, nargs="+", default=[8, 32, 128])
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", nargs="+", default=["cpu", "cuda"])
    arguments = parser.parse_args()
    torch.set_num_threads(arguments.threads)
    settings = LoopSettings(epochs=arguments.epochs, lr=0.1, momentum=0.9)
    for name in arguments.device:
        if name == "cuda" and not torch.cuda.is_available():
            print("cuda: no GPU visible, skipped")
            continue
        device = torch.device(name)
        data = create_dataset("fashion-mnist", train_subset=2000).to(device)
        label = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {arguments.threads} threads"
        print(f"{label}: 2×1024 MLP, 2,000 Fashion-MNIST images, {arguments.epochs} epoch(s) per model")
        for count in arguments.models:
            models = build(count, data, device)
            synchronize(device)
            started = time.perf_counter()
            for seed, model in enumerate(models):
                train_classifier(model, data, None, settings, 128, seed, device)
            synchronize(device)
            sequential = time.perf_counter() - started
            models = build(count, data, device)
            synchronize(device)
            started = time.perf_counter()
            train_stacked(models, data, None, settings, 128, list(range(count)), device)
            synchronize(device)
            stacked = time.perf_counter() - started
            print(f"  N = {count:4d}: one at a time {3600 * count / sequential:9,.0f} models/h ({sequential:6.1f} s), "
                  f"stacked {3600 * count / stacked:9,.0f} models/h ({stacked:6.1f} s): stacked ÷ sequential "
                  f"{sequential / stacked:.2f}×")
            del models


if __name__ == "__main__":
    main()
