"""`unlearn split`: write a forget-set file (IID, non-IID over some classes, or whole classes).

Usage:
    unlearn split --dataset cifar10 --kind noniid --fraction 0.1 --classes 2,5 --seed 0 -o forget.json
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Optional

import typer

from unlearn_cli.cli.common import ConfigOption, DataRootOption, QuietOption, SeedOption, handle_errors, stderr
from unlearn_cli.config import parse_options, resolve_config
from unlearn_cli.data import create_dataset, list_datasets
from unlearn_cli.data.splits import draw_forget_indices
from unlearn_cli.errors import UserError
from unlearn_cli.io.forget import forget_set_json
from unlearn_cli.io.streams import check_writable, write_output


@dataclass
class SplitConfig:
    dataset: str = "digits"
    data_root: Optional[str] = None
    dataset_options: dict = field(default_factory=dict)  # e.g. {train_subset: 10000}
    kind: str = "iid"  # iid | noniid | class
    fraction: float = 0.1  # of the training set (iid, noniid) or of the chosen classes (class)
    classes: Optional[list[int]] = None
    seed: int = 0


def parse_classes(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise UserError(f"--classes {text!r}: give class numbers separated by commas, e.g. --classes 2,5") from None


@handle_errors
def split(
    output: Annotated[str, typer.Option("--output", "-o", help="Forget-set JSON to write ('-' for stdout).")],
    dataset: Annotated[Optional[str], typer.Option(help=f"One of: {', '.join(list_datasets())} (default: digits)")] = None,
    kind: Annotated[Optional[str], typer.Option(help="iid, noniid or class (default: iid)")] = None,
    fraction: Annotated[Optional[float], typer.Option(help="Share of the training set to forget (default: 0.1)")] = None,
    classes: Annotated[Optional[str], typer.Option(help="Classes for noniid/class, e.g. 2,5")] = None,
    dataset_option: Annotated[Optional[list[str]], typer.Option("--dataset-option", help="key=value dataset option, e.g. train_subset=10000")] = None,
    data_root: DataRootOption = None,
    seed: SeedOption = None,
    config: ConfigOption = None,
    quiet: QuietOption = False,
):
    """Draw a forget set (seeded, reproducible) and write it as JSON."""
    cfg = resolve_config(SplitConfig, config, {
        "dataset": dataset, "kind": kind, "fraction": fraction, "classes": parse_classes(classes), "seed": seed,
        "data_root": data_root, "dataset_options": parse_options(dataset_option, "--dataset-option")}, section="split")
    check_writable(output, "--output", {"--config": config}, binary=False)
    data = create_dataset(cfg.dataset, data_root=cfg.data_root, where="--dataset-option", **cfg.dataset_options)
    indices = draw_forget_indices(data.train_labels, cfg.kind, cfg.fraction, cfg.classes, cfg.seed)
    write_output(output, forget_set_json(indices, dataset=cfg.dataset, num_train=data.num_train, kind=cfg.kind,
                                         fraction=cfg.fraction, classes=cfg.classes, seed=cfg.seed), binary=False)
    if not quiet:
        stderr.print(f"forget set: {len(indices)} of {data.num_train} {cfg.dataset} training examples ({cfg.kind}) -> {output}")
