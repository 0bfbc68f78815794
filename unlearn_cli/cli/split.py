"""`unlearn split`: write a forget-set file (IID, non-IID over some classes, whole classes, or one tercile of the
examples ranked by memorization), or one that carries a manipulation of the training data (mislabeled or poisoned
examples) for corrective unlearning.

Usage:
    unlearn split --dataset cifar10 --kind noniid --fraction 0.1 --classes 2,5 --seed 0 -o forget.json
    unlearn split --dataset digits --kind memorization --level high --model original.safetensors --fraction 0.1 -o f.json
    unlearn split --dataset digits --kind mislabel --fraction 0.1 --to random --known 0.5 -o mislabel.json
    unlearn split --dataset digits --kind poison --fraction 0.01 --target 0 --patch 3 --corner br -o poison.json
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Optional, Union

import typer

from unlearn_cli.cli.common import ConfigOption, QuietOption, handle_errors, stderr
from unlearn_cli.cli.options import with_options
from unlearn_cli.config import option, resolve_config, seed_option
from unlearn_cli.data import DatasetChoice
from unlearn_cli.errors import UserError
from unlearn_cli.streams import check_writable, write_output


@dataclass
class SplitConfig(DatasetChoice):
    kind: str = option("iid", "iid, noniid, class, memorization, mislabel or poison")
    fraction: float = option(0.1, "Share of the training set to forget")  # of the chosen classes for `class`
    classes: Optional[list[int]] = option(None, "Classes for noniid/class, e.g. 2,5 (mislabel, poison: draw only "
                                                "from these)", parse=lambda text: parse_classes(text))
    seed: int = seed_option()
    to: Optional[Union[str, int]] = option(None, "mislabel: the wrong label: random (another class, uniform), next "
                                                 "(y+1 mod C) or a class number", default_text="random")
    target: Optional[int] = option(None, "poison: the label the trigger maps to (required)")
    patch: int = option(3, "poison: side of the square trigger in pixels")
    patch_value: str = option("max", "poison: fill the patch with the images' max or min value per channel")
    corner: str = option("br", "poison: br, bl, tr or tl")
    known: float = option(1.0, "mislabel, poison: share of the manipulated examples the unlearner knows")
    level: Optional[str] = option(None, "memorization: the tercile to draw from: low, mid or high")
    model: Optional[str] = option(None, "memorization: a checkpoint of `unlearn train` whose recorded proxy ranks the "
                                        "examples (or a reference-estimate file)", "--model", "-m")

    def changed(self, names: tuple[str, ...]) -> list[str]:
        """The flags among `names` whose values differ from their defaults."""
        fields = self.__dataclass_fields__
        return [f"--{name.replace('_', '-')}" for name in names if getattr(self, name) != fields[name].default]


MISLABEL_OPTIONS = ("to",)
POISON_OPTIONS = ("target", "patch", "patch_value", "corner")
MEMORIZATION_OPTIONS = ("level", "model")


def _check_memorization_options(cfg: SplitConfig) -> None:
    """--kind memorization needs --level and --model, and draws from every class."""
    from unlearn_cli.data.splits import LEVELS

    if cfg.level not in LEVELS:
        given = "no --level" if cfg.level is None else f"--level {cfg.level!r}"
        raise UserError(f"{given}: --kind memorization draws from one tercile; choose --level {'|'.join(LEVELS)}")
    if cfg.model is None:
        raise UserError("--kind memorization needs --model: a checkpoint of `unlearn train` (its recorded proxy ranks "
                        "the examples) or a reference-estimate file")
    if cfg.classes:
        raise UserError("--classes: --kind memorization draws from the examples of every class in its tercile")


def parse_classes(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise UserError(f"--classes {text!r}: give class numbers separated by commas, e.g. --classes 2,5") from None


def _check_kind_options(cfg: SplitConfig) -> bool:
    """The kind (a split's, memorization or a manipulation) is known and every option given belongs to it; whether
    it is a manipulation."""
    from unlearn_cli.data.manipulation import KINDS as MANIPULATIONS
    from unlearn_cli.data.splits import KINDS, MEMORIZATION

    kinds = KINDS + (MEMORIZATION,)
    if cfg.kind not in kinds + MANIPULATIONS:
        raise UserError(f"--kind {cfg.kind!r}: choose one of {', '.join(kinds + MANIPULATIONS)}")
    manipulated = cfg.kind in MANIPULATIONS
    if cfg.kind != MEMORIZATION and cfg.changed(MEMORIZATION_OPTIONS):
        raise UserError(f"{cfg.changed(MEMORIZATION_OPTIONS)[0]} describes a memorization split; it needs --kind "
                        f"memorization")
    if not manipulated:
        named = cfg.changed(MISLABEL_OPTIONS + POISON_OPTIONS + ("known",))
        if named:
            raise UserError(f"{named[0]} describes a manipulation; it needs --kind mislabel or --kind poison")
    else:  # an option of the other manipulation is a mistake, not something to ignore
        named = cfg.changed(POISON_OPTIONS if cfg.kind == "mislabel" else MISLABEL_OPTIONS)
        if named:
            raise UserError(f"{named[0]} describes a {'poison' if cfg.kind == 'mislabel' else 'mislabel'} "
                            f"manipulation; --kind {cfg.kind} takes "
                            f"{'--to random|next|CLASS' if cfg.kind == 'mislabel' else '--target, --patch, --patch-value, --corner'}")
    if cfg.kind == MEMORIZATION:
        _check_memorization_options(cfg)
    return manipulated


@handle_errors
@with_options(SplitConfig)
def split(
    given: dict,
    output: Annotated[str, typer.Option("--output", "-o", help="Forget-set JSON to write ('-' for stdout).")],
    config: ConfigOption = None,
    quiet: QuietOption = False,
):
    """Draw a forget set (seeded, reproducible) and write it as JSON.

    mislabel and poison draw the examples of a manipulation of the training data: train the model on it with
    `unlearn train --manipulate FILE`, the oracle with `--exclude FILE`; localize and apply unlearn the known
    part (--known) as the model was trained on it.
    """
    from unlearn_cli.data.manipulation import draw_known, draw_manipulation  # here: --help needs no torch
    from unlearn_cli.data.splits import MEMORIZATION, draw_forget_indices, draw_from_tercile
    from unlearn_cli.io.forget import forget_set_json  # needs no torch
    from unlearn_cli.runs.memorization import check_scores_fit, read_memorization_source

    cfg = resolve_config(SplitConfig, config, given, section="split")
    manipulated = _check_kind_options(cfg)
    check_writable(output, "--output", {"--config": config, "--model": cfg.model}, binary=False)
    data = cfg.build()
    common = {"dataset": cfg.dataset, "num_train": data.num_train, "kind": cfg.kind, "fraction": cfg.fraction,
              "classes": cfg.classes, "seed": cfg.seed}
    if cfg.kind == MEMORIZATION:
        scores = read_memorization_source(cfg.model, "--model")
        check_scores_fit(scores, cfg.dataset, data.kwargs, data.num_train)
        indices = draw_from_tercile(scores.values, cfg.level, cfg.fraction, cfg.seed)
        document = forget_set_json(indices, **common, memorization={"level": cfg.level, **scores.record()})
    elif manipulated:
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
        what = f"{manipulation.describe()}, {len(known_part)} known" if manipulated else (
            f"the {cfg.level} memorization tercile" if cfg.kind == MEMORIZATION else cfg.kind)
        stderr.print(f"forget set: {len(indices)} of {data.num_train} {cfg.dataset} training examples ({what}) -> {output}")
