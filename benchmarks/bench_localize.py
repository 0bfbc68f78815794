"""How expensive is localization? Ratios measured in one run on Fashion-MNIST (CPU).

Prints
  1. DEL's localization time ÷ the time of one forward+backward pass over the forget set (target ≤ 1.3):
     DEL is one summed-gradient pass plus neuron scoring and a sort, so the ratio should sit near 1.
  2. CritMem's time ÷ DEL's on the same forget examples: CritMem runs one forward+backward per example per
     zeroed channel (Maini et al. 2023), so it is expected to be far slower.

Setting of docs/cpu-calibration.md: a 10,000-image training subset, the non-IID forget set (10%, classes 2 and 5), the
CPU benchmark MLP (2×1024) trained for two epochs so that forget examples are mostly classified correctly
(CritMem's loop only starts on correct ones). Each time is the median of repeats run alternately with the
time it is divided by, on one thread by default (timings on a shared 2-core machine are steadier that way).
About a minute.

Usage:
    python benchmarks/bench_localize.py [--data-root /usr/share/datasets/fashion-mnist] [--critmem-examples 100]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from unlearn_cli.data import create_dataset
from unlearn_cli.data.splits import draw_forget_indices
from unlearn_cli.engine import LoopSettings, accuracy, seed_everything, train_classifier
from unlearn_cli.localize import LocalizationData, LocalizeSettings, localize
from unlearn_cli.models import create_model


def seconds(function) -> float:
    started = time.perf_counter()
    function()
    return time.perf_counter() - started


def paired_medians(first, second, repeats: int) -> tuple[float, float]:
    """Median times of two functions run alternately, so that load from other processes hits both alike."""
    times = [(seconds(first), seconds(second)) for _ in range(repeats)]
    return statistics.median(t[0] for t in times), statistics.median(t[1] for t in times)


def forward_backward(model, batches) -> None:
    """One plain training-style pass: forward, mean cross-entropy, backward, over every batch."""
    model.eval()
    for inputs, labels in batches():
        model.zero_grad(set_to_none=True)
        F.cross_entropy(model(inputs), labels).backward()
    model.zero_grad(set_to_none=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", default=None, help="Fashion-MNIST IDX files (default: Debian's location)")
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--critmem-examples", type=int, default=100, help="forget examples CritMem and DEL are timed on")
    parser.add_argument("--train-subset", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    seed_everything(0)
    data = create_dataset("fashion-mnist", data_root=args.data_root, train_subset=args.train_subset)
    forget_indices = draw_forget_indices(data.train_labels, "noniid", 0.1, [2, 5], seed=0)  # the paper's shape of forget set
    model = create_model("mlp", data.num_classes, data.input_shape, width=args.width, depth=2)
    started = time.perf_counter()
    train_classifier(model, data, None, LoopSettings(epochs=2, lr=0.1), args.batch_size, seed=0, device=torch.device("cpu"))
    print(f"setup: mlp 2×{args.width} ({sum(p.numel() for p in model.parameters()):,} parameters) trained 2 epochs on "
          f"{data.num_train:,} Fashion-MNIST images in {time.perf_counter() - started:.1f} s; "
          f"test accuracy {accuracy(model, data.batches('test', batch_size=1024)):.1f}%; {torch.get_num_threads()} threads")

    def batches_of(indices):
        return lambda: data.batches("train", indices, args.batch_size)

    forget = LocalizationData(batches_of(forget_indices))
    del_settings = LocalizeSettings(strategy="del", budget=0.3)
    localize(model, forget, del_settings)  # warm-up
    forward_backward(model, forget.forget_batches)
    pass_time, del_time = paired_medians(lambda: forward_backward(model, forget.forget_batches),
                                         lambda: localize(model, forget, del_settings), args.repeats)
    print(f"forget set: {len(forget_indices):,} examples (non-IID, classes 2 and 5), batch {args.batch_size}")
    print(f"  one forward+backward pass  {pass_time * 1000:8.1f} ms")
    print(f"  DEL localization           {del_time * 1000:8.1f} ms")
    print(f"  DEL ÷ forward+backward     {del_time / pass_time:8.2f}   (target ≤ 1.3)")

    subset = forget_indices[: args.critmem_examples]
    small = LocalizationData(batches_of(subset))
    del_small, critmem_time = paired_medians(lambda: localize(model, small, del_settings),
                                             lambda: localize(model, small, LocalizeSettings(strategy="critmem")), 3)
    print(f"first {len(subset)} forget examples:")
    print(f"  DEL localization           {del_small * 1000:8.1f} ms")
    print(f"  CritMem localization       {critmem_time * 1000:8.1f} ms")
    print(f"  CritMem ÷ DEL              {critmem_time / del_small:8.1f}")
    projected = critmem_time / len(subset) * len(forget_indices)
    print(f"  CritMem on all {len(forget_indices):,} examples ≈ {projected:.0f} s by extrapolation, "
          f"{projected / del_time:.0f}× DEL's time on them")


if __name__ == "__main__":
    main()
