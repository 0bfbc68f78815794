"""Cost of localized unlearning: wall time of `rft` on a 20% DEL mask ÷ full `finetune`, same epochs, one run.

Fashion-MNIST (10,000-example training subset), the 2×1024 MLP, the non-IID forget set of docs/cpu-calibration.md (10% of
the training set from classes 2 and 5). The oracle's retrain time is printed for scale. Prints ratios
measured in this one run; absolute times depend on the machine.

Usage:
    .venv/bin/python benchmarks/bench_apply.py [--epochs 2] [--train-epochs 8] [--threads 1] [--data-root DIR]
"""

from __future__ import annotations

import argparse
import copy
import time

import torch

from unlearn_cli.data import create_dataset
from unlearn_cli.data.splits import draw_forget_indices
from unlearn_cli.engine import LoopSettings, accuracy, seed_everything, train_classifier
from unlearn_cli.io.mask import mask_counts
from unlearn_cli.localize import LocalizationData, LocalizeSettings, localize
from unlearn_cli.methods import UnlearnData, get_method, method_config
from unlearn_cli.models import create_model


def timed(fn):
    started = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2, help="epochs of finetune and of rft")
    parser.add_argument("--train-epochs", type=int, default=8, help="epochs of the original and of the oracle")
    parser.add_argument("--budget", type=float, default=0.2)
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    cpu = torch.device("cpu")
    dataset = create_dataset("fashion-mnist", data_root=args.data_root, train_subset=10000)
    forget = draw_forget_indices(dataset.train_labels, "noniid", 0.1, [2, 5], seed=0)
    factory = lambda: create_model("mlp", dataset.num_classes, dataset.input_shape, width=1024, depth=2)  # noqa: E731
    data = UnlearnData.split(dataset, forget, new_model=factory)
    recipe = LoopSettings(epochs=args.train_epochs, lr=0.1)

    seed_everything(0)
    original = factory()
    _, train_time = timed(lambda: train_classifier(original, dataset, None, recipe, 128, 0, cpu))
    seed_everything(0)
    oracle = factory()
    _, oracle_time = timed(lambda: train_classifier(oracle, dataset, data.retain, recipe, 128, 0, cpu))

    forget_data = LocalizationData(forget_batches=lambda: dataset.batches("train", forget, 128))
    mask, localize_time = timed(lambda: localize(original, forget_data, LocalizeSettings(strategy="del", budget=args.budget)))
    selected, total = mask_counts(mask)

    def run(name: str, settings: dict, mask):
        cfg = method_config(name, {"epochs": args.epochs, **settings})
        return timed(lambda: get_method(name).run(copy.deepcopy(original), data, mask, cfg))

    finetuned, finetune_time = run("finetune", {}, None)
    reset_finetuned, rft_time = run("rft", {"lr": 0.05}, mask)

    def scores(model) -> str:
        forget_accuracy = accuracy(model, dataset.batches("train", forget, 1024))
        test_accuracy = accuracy(model, dataset.batches("test", None, 1024))
        return f"forget {forget_accuracy:5.1f}%  test {test_accuracy:5.1f}%"

    print(f"fashion-mnist 10k, mlp 2x1024, non-IID forget set of {len(forget)}; threads {torch.get_num_threads()}")
    print(f"DEL mask: {selected:,} of {total:,} parameters ({selected / total:.1%}), localized in {localize_time:.2f} s")
    print(f"original  ({args.train_epochs} epochs): {train_time:6.2f} s  {scores(original)}")
    print(f"oracle    ({args.train_epochs} epochs): {oracle_time:6.2f} s  {scores(oracle)}")
    print(f"finetune  ({args.epochs} epochs): {finetune_time:6.2f} s  {scores(finetuned)}")
    print(f"rft + DEL ({args.epochs} epochs): {rft_time:6.2f} s  {scores(reset_finetuned)}")
    print(f"rft / finetune wall time: {rft_time / finetune_time:.2f}")
    print(f"rft / oracle retrain wall time: {rft_time / oracle_time:.2f}; "
          f"(localize + rft) / oracle: {(localize_time + rft_time) / oracle_time:.2f}")


if __name__ == "__main__":
    main()
