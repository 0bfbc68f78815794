"""Checks the cost convention (a backward pass ≈ 2 forward passes) per method with torch's FLOP counter, and times
the work meter's overhead on the training loop, in one run.

For every registered method, on digits with the `mlp` and the `cnn`: the FLOPs torch counts while the method runs
(`torch.utils.flop_counter.FlopCounterMode`: matrix products and convolutions) divided by the FLOPs of one forward
example × the work units the method predicts (forward + 2 × backward examples). A ratio of 1 says the convention
prices the method exactly; below 1, its backward passes cost less than two forwards (frozen layers, a head-only
gradient); above 1, it does work the convention does not see (iu's inverse-Hessian products).

Usage:
    python benchmarks/bench_cost.py [--archs mlp cnn] [--rounds 3]

Target: FLOP ratio within 0.8–1.25 for the finetune-like methods; meter overhead ratio >= 0.95.
"""

from __future__ import annotations

import argparse
import copy
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from unlearn_cli.cost import WorkMeter
from unlearn_cli.data import create_dataset
from unlearn_cli.engine import LoopSettings, train_classifier
from unlearn_cli.methods import SetSizes, UnlearnData, get_method, list_methods, method_config
from unlearn_cli.models import create_model

ARCHS = {"mlp": {"width": 256}, "cnn": {"width": 8, "depth": 2}}


def forward_flops_per_example(model, inputs) -> float:
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(inputs)
    return counter.get_total_flops() / len(inputs)


def flop_ratios(arch: str, data) -> dict[str, float]:
    factory = lambda: create_model(arch, 10, (1, 8, 8), **ARCHS[arch])  # noqa: E731
    torch.manual_seed(0)
    original = factory()
    train_classifier(original, data, None, LoopSettings(epochs=2, lr=0.1), 64, 0, torch.device("cpu"))
    unlearn_data = UnlearnData.split(data, torch.arange(0, data.num_train, 10), new_model=factory,
                                     training_config={"epochs": 2, "batch_size": 64})
    per_example = forward_flops_per_example(original, data.train_inputs[:64])
    ratios = {}
    convolutional = any(isinstance(module, torch.nn.Conv2d) for module in original.modules())
    for name in list_methods():
        if get_method(name).conv_only and not convolutional:  # refused on a model without convolutions (ct)
            continue
        cfg = method_config(name, {key: value for key, value in {"epochs": 1, "num_samples": 32}.items()
                                   if key in get_method(name).config_class.__dataclass_fields__})
        predicted = get_method(name).work(copy.deepcopy(cfg), SetSizes.of(unlearn_data))
        with FlopCounterMode(display=False) as counter:
            get_method(name).run(copy.deepcopy(original), unlearn_data, None, cfg)
        ratios[name] = counter.get_total_flops() / (per_example * predicted.units)
    return ratios


def meter_overhead(data, rounds: int) -> float:
    """Images/s of the training loop with a meter open over images/s without one (best of `rounds` each)."""
    def timed(metered: bool) -> float:
        best = float("inf")
        for _ in range(rounds):
            torch.manual_seed(0)
            model = create_model("mlp", 10, (1, 8, 8), width=1024)  # the Fashion-MNIST suite's MLP width
            started = time.perf_counter()
            if metered:
                with WorkMeter():
                    train_classifier(model, data, None, LoopSettings(epochs=3), 128, 0, torch.device("cpu"))
            else:
                train_classifier(model, data, None, LoopSettings(epochs=3), 128, 0, torch.device("cpu"))
            best = min(best, time.perf_counter() - started)
        return best

    timed(False)  # warm-up
    return timed(False) / timed(True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", nargs="+", default=list(ARCHS), choices=list(ARCHS))
    parser.add_argument("--rounds", type=int, default=3)
    arguments = parser.parse_args()
    torch.set_num_threads(1)
    data = create_dataset("digits")
    print("FLOPs counted ÷ (forward FLOPs per example × predicted work units), per method:")
    for arch in arguments.archs:
        ratios = flop_ratios(arch, data)
        print(f"  {arch}: " + ", ".join(f"{name} {ratio:.2f}" for name, ratio in ratios.items()))
    print(f"training loop with a meter open ÷ without (images/s): {meter_overhead(data, arguments.rounds):.3f}")


if __name__ == "__main__":
    main()
