"""Images/s of `engine.train_classifier` vs a bare PyTorch loop: same model, data, batch size, one run.

Usage:
    python benchmarks/bench_train.py [--images 12800] [--rounds 3]

Target: ratio >= 0.95 (the shared loop costs at most 5% over hand-written SGD).
"""

from __future__ import annotations

import argparse
import copy
import time

import torch
from torch import nn

from unlearn_cli.data import create_dataset
from unlearn_cli.engine import ConfidenceRecord, LoopSettings, train_classifier
from unlearn_cli.models import create_model


def bare_loop(model, data, indices, batch_size, lr, seed):
    """The textbook loop: SGD momentum, per-step cosine, cross-entropy, nothing else."""
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    steps = -(-len(indices) // batch_size)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    model.train()
    order = indices[torch.randperm(len(indices), generator=torch.Generator().manual_seed(seed))]
    for start in range(0, len(order), batch_size):
        batch = order[start : start + batch_size]
        inputs, labels = data.train_inputs[batch], data.train_labels[batch]
        loss = nn.functional.cross_entropy(model(inputs), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=12800)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--arch", default="cnn")
    args = parser.parse_args()
    data = create_dataset("fashion-mnist")
    indices = torch.arange(args.images)
    torch.manual_seed(0)
    initial = create_model(args.arch, data.num_classes, data.input_shape)
    ours, bare, recorded = [], [], []
    warm = copy.deepcopy(initial)
    train_classifier(warm, data, indices[:512], LoopSettings(epochs=1), 128, 0, torch.device("cpu"))
    for round_index in range(args.rounds):  # alternate so both see the same machine state
        model = copy.deepcopy(initial)
        started = time.perf_counter()
        bare_loop(model, data, indices, 128, 0.1, round_index)
        bare.append(args.images / (time.perf_counter() - started))
        model = copy.deepcopy(initial)
        started = time.perf_counter()
        train_classifier(model, data, indices, LoopSettings(epochs=1, lr=0.1), 128, round_index, torch.device("cpu"))
        ours.append(args.images / (time.perf_counter() - started))
        model = copy.deepcopy(initial)  # as `unlearn train` runs by default: the memorization proxy recorded
        started = time.perf_counter()
        train_classifier(model, data, indices, LoopSettings(epochs=1, lr=0.1), 128, round_index, torch.device("cpu"),
                         record=ConfidenceRecord(1, data.num_train))
        recorded.append(args.images / (time.perf_counter() - started))
    best_ours, best_bare, best_recorded = max(ours), max(bare), max(recorded)
    print(f"{args.arch} on fashion-mnist, batch 128, {args.images} images x {args.rounds} rounds, "
          f"{torch.get_num_threads()} threads")
    print(f"bare PyTorch loop : {best_bare:8.0f} images/s (best of {args.rounds})")
    print(f"unlearn engine    : {best_ours:8.0f} images/s (best of {args.rounds})")
    print(f"engine, recording : {best_recorded:8.0f} images/s (best of {args.rounds}; the memorization proxy)")
    print(f"ratio engine/bare : {best_ours / best_bare:.3f}  (target >= 0.95)")
    print(f"ratio recording/bare: {best_recorded / best_bare:.3f}")


if __name__ == "__main__":
    main()
