"""`unlearn split`: write a forget-set file (IID, non-IID over some classes, or whole classes), or one that
carries a manipulation of the training data (mislabeled or poisoned examples) for corrective unlearning.

Usage:
    unlearn split --dataset cifar10 --kind noniid --fraction 0.1 --classes 2,5 --seed 0 -o forget.json
    unlearn split --dataset digits --kind mislabel --fraction 0.1 --to random --known 0.5 -o mislabel.json
    unlearn split --dataset digits --kind poison --fraction 0.01 --target 0 --patch 3 --corner br -o poison.json
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Optional, Union

import typer

from unlearn_cli.cli.common import ConfigOption, DataRootOption, QuietOption, SeedOption, handle_errors, stderr
from unlearn_cli.config import parse_options, resolve_config
from unlearn_cli.data import create_dataset, list_datasets
from unlearn_cli.data.manipulation import KINDS as MANIPULATIONS, draw_known, draw_manipulation
from unlearn_cli.data.splits import KINDS as SPLIT_KINDS, draw_forget_indices
from unlearn_cli.errors import UserError
from unlearn_cli.io.forget import forget_set_json
from unlearn_cli.streams import check_writable, write_output


@dataclass
class SplitConfig:
    dataset: str = "digits"
    data_root: Optional[str] = None
    dataset_options: dict = field(default_factory=dict)  # e.g. {train_subset: 10000}
    kind: str = "iid"  # iid | noniid | class | mislabel | poison
    fraction: float = 0.1  # of the training set (iid, noniid, mislabel, poison) or of the chosen classes (class)
    classes: Optional[list[int]] = None
    seed: int = 0
    to: Optional[Union[str, int]] = None  # mislabel: random (default) | next | a class number
    target: Optional[int] = None  # poison: the label the trigger maps to
    patch: int = 3  # poison: side of the square trigger in pixels
    patch_value: str = "max"  # poison: max | min, the training images' extreme per channel
    corner: str = "br"  # poison: br | bl | tr | tl
    known: float = 1.0  # mislabel, poison: the share of the manipulated examples the unlearner knows


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
    kind: Annotated[Optional[str], typer.Option(help="iid, noniid, class, mislabel or poison (default: iid)")] = None,
    fraction: Annotated[Optional[float], typer.Option(help="Share of the training set to forget (default: 0.1)")] = None,
    classes: Annotated[Optional[str], typer.Option(help="Classes for noniid/class, e.g. 2,5 (mislabel, poison: draw only from these)")] = None,
    to: Annotated[Optional[str], typer.Option(help="mislabel: the wrong label: random (another class, uniform), next (y+1 mod C) or a class number (default: random)")] = None,
    target: Annotated[Optional[int], typer.Option(help="poison: the label the trigger maps to (required)")] = None,
    patch: Annotated[Optional[int], typer.Option(help="poison: side of the square trigger in pixels (default: 3)")] = None,
    patch_value: Annotated[Optional[str], typer.Option(help="poison: fill the patch with the images' max or min value per channel (default: max)")] = None,
    corner: Annotated[Optional[str], typer.Option(help="poison: br, bl, tr or tl (default: br)")] = None,
    known: Annotated[Optional[float], typer.Option(help="mislabel, poison: share of the manipulated examples the unlearner knows (default: 1)")] = None,
    dataset_option: Annotated[Optional[list[str]], typer.Option("--dataset-option", help="key=value dataset option, e.g. train_subset=10000")] = None,
    data_root: DataRootOption = None,
    seed: SeedOption = None,
    config: ConfigOption = None,
    quiet: QuietOption = False,
):
    """Draw a forget set (seeded, reproducible) and write it as JSON.

    mislabel and poison draw the examples of a manipulation of the training data: train the model on it with
    `unlearn train --manipulate FILE`, the oracle with `--exclude FILE`; localize and apply unlearn the known
    part (--known) as the model was trained on it.
    """
    cfg = resolve_config(SplitConfig, config, {
        "dataset": dataset, "kind": kind, "fraction": fraction, "classes": parse_classes(classes), "seed": seed,
        "to": to, "target": target, "patch": patch, "patch_value": patch_value, "corner": corner, "known": known,
        "data_root": data_root, "dataset_options": parse_options(dataset_option, "--dataset-option")}, section="split")
    if cfg.kind not in SPLIT_KINDS + MANIPULATIONS:
        raise UserError(f"--kind {cfg.kind!r}: choose one of {', '.join(SPLIT_KINDS + MANIPULATIONS)}")
    manipulated = cfg.kind in MANIPULATIONS
    if not manipulated:
        given = [flag for flag, value, default in (
            ("--to", cfg.to, None), ("--target", cfg.target, None), ("--patch", cfg.patch, 3),
            ("--patch-value", cfg.patch_value, "max"), ("--corner", cfg.corner, "br"), ("--known", cfg.known, 1.0))
            if value != default]
        if given:
            raise UserError(f"{given[0]} describes a manipulation; it needs --kind mislabel or --kind poison")
    else:  # an option of the other manipulation is a mistake, not something to ignore
        other = ([("--target", cfg.target, None), ("--patch", cfg.patch, 3), ("--patch-value", cfg.patch_value, "max"),
                  ("--corner", cfg.corner, "br")] if cfg.kind == "mislabel" else [("--to", cfg.to, None)])
        given = [flag for flag, value, default in other if value != default]
        if given:
            raise UserError(f"{given[0]} describes a {'poison' if cfg.kind == 'mislabel' else 'mislabel'} "
                            f"manipulation; --kind {cfg.kind} takes "
                            f"{'--to random|next|CLASS' if cfg.kind == 'mislabel' else '--target, --patch, --patch-value, --corner'}")
    check_writable(output, "--output", {"--config": config}, binary=False)
    data = create_dataset(cfg.dataset, data_root=cfg.data_root, where="--dataset-option", **cfg.dataset_options)
    common = {"dataset": cfg.dataset, "num_train": data.num_train, "kind": cfg.kind, "fraction": cfg.fraction,
              "classes": cfg.classes, "seed": cfg.seed}
    if manipulated:
        manipulation = draw_manipulation(data.train_labels, cfg.kind, cfg.fraction, cfg.classes, cfg.seed,
                                         to=cfg.to, target=cfg.target, patch=cfg.patch, corner=cfg.corner,
                                         value=cfg.patch_value, image_size=data.input_shape[1:])
        indices = manipulation.indices
        known_part = draw_known(indices, cfg.known, cfg.seed)
        document = forget_set_json(indices, **common, manipulation=manipulation, known=known_part,
                                   known_share=cfg.known)
    else:
        indices = draw_forget_indices(data.train_labels, cfg.kind, cfg.fraction, cfg.classes, cfg.seed)
        document = forget_set_json(indices, **common)
    write_output(output, document, binary=False)
    if not quiet:
        what = f"{manipulation.describe()}, {len(known_part)} known" if manipulated else cfg.kind
        stderr.print(f"forget set: {len(indices)} of {data.num_train} {cfg.dataset} training examples ({what}) -> {output}")
