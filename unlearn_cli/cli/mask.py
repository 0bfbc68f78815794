"""`unlearn mask`: inspect a mask, compare two, or draw a structure-matched random control.

Usage:
    unlearn mask info mask.safetensors [--json -]
    unlearn mask compare del.safetensors salun.safetensors [--json overlap.json]
    unlearn mask random --like del.safetensors --seed 1 -o control.safetensors
    unlearn mask random --config control.yaml -o control.safetensors     # like: and seed: from YAML

`--config FILE.yaml` holds a command's options (flags override them). `mask info` and `mask compare` have no
options besides their arguments and outputs, which are always given on the command line.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Optional

import typer
from rich.table import Table

from unlearn_cli.cli.common import ConfigOption, QuietOption, add_row, handle_errors, print_json, stderr, terminal_text
from unlearn_cli.cli.options import with_options
from unlearn_cli.config import config_dict, option, resolve_config, seed_option
from unlearn_cli.errors import UserError
from unlearn_cli.streams import check_writable, write_output

app = typer.Typer(help="Inspect masks, compare them, draw structure-matched random controls.", no_args_is_help=True,
                  context_settings={"help_option_names": ["-h", "--help"]})

JsonOption = Annotated[Optional[str], typer.Option("--json", help="Also write the numbers as JSON to this file ('-' for stdout).")]


@dataclass
class MaskInfoConfig:
    """`mask info` has no options besides its argument and --json (an output)."""


@dataclass
class MaskCompareConfig:
    """`mask compare` has no options besides its two arguments and --json (an output)."""


@dataclass
class MaskRandomConfig:
    like: Optional[str] = option(None, "Mask whose per-tensor unit counts the control reproduces (required; or like: "
                                       "in --config).", "--like")
    seed: int = seed_option()


def _or(recorded: str | None, default: str) -> str:
    """A text field of the --like mask, or `default` when it records none."""
    return default if recorded is None else recorded


def _percent(fraction: float) -> str:
    return f"{100 * fraction:.2f}%"


@app.command("info")
@handle_errors
def info(
    mask: Annotated[str, typer.Argument(help="Mask file ('-' for stdin).")],
    json_output: JsonOption = None,
    config: ConfigOption = None,
    quiet: QuietOption = False,
):
    """Per tensor: selected parameters and fraction, whole and partly selected rows; totals."""
    resolve_config(MaskInfoConfig, config, {})
    if json_output is not None:
        check_writable(json_output, "--json", {"MASK": mask, "--config": config}, binary=False)
    from unlearn_cli.io.mask import read_mask_arrays, typed_mask_metadata  # here: --help needs no torch
    from unlearn_cli.localize.summary import mask_summary

    mask_file = read_mask_arrays(mask)  # numpy: `mask info` needs no torch
    summary = mask_summary(mask_file.mask)
    if not quiet:
        table = Table(title=terminal_text(f"{mask_file.source}: {mask_file.record.describe()}"), title_justify="left")
        for column in ("tensor", "shape", "selected", "total", "fraction", "rows selected", "rows partly"):
            table.add_column(column, justify="left" if column in ("tensor", "shape") else "right")
        for entry in summary["tensors"]:
            add_row(table, [entry["name"], "×".join(map(str, entry["shape"])) or "scalar", f"{entry['selected']:,}",
                            f"{entry['total']:,}", _percent(entry["fraction"]),
                            f"{entry['rows_selected']}/{entry['rows']}" if "rows" in entry else "",
                            str(entry["rows_partial"]) if "rows" in entry else ""])
        table.add_section()
        table.add_row("total", "", f"{summary['selected']:,}", f"{summary['total']:,}", _percent(summary["selected_fraction"]), "", "")
        stderr.print(table)
    if json_output is not None:
        metadata = typed_mask_metadata(mask_file.meta, mask_file.source)
        print_json({"mask": mask, "sha256": mask_file.sha256, "metadata": metadata, **summary}, json_output)


@app.command("compare")
@handle_errors
def compare(
    first: Annotated[str, typer.Argument(help="First mask file.")],
    second: Annotated[str, typer.Argument(help="Second mask file.")],
    json_output: JsonOption = None,
    config: ConfigOption = None,
    quiet: QuietOption = False,
):
    """Intersection over union of two masks of the same model, overall and per tensor."""
    resolve_config(MaskCompareConfig, config, {})
    if json_output is not None:
        check_writable(json_output, "--json", {"FIRST": first, "SECOND": second, "--config": config}, binary=False)
    if first == "-" and second == "-":
        raise UserError("only one of the two masks can come from stdin ('-')")
    from unlearn_cli.io.mask import read_mask  # here: --help needs no torch
    from unlearn_cli.localize.summary import mask_overlap

    first_file, second_file = read_mask(first), read_mask(second)
    overlap = mask_overlap(first_file.mask, second_file.mask, first, second)
    if not quiet:
        table = Table(title=terminal_text(f"{first} vs {second}: IoU {overlap['iou']:.4f}"), title_justify="left")
        for column in ("tensor", "first", "second", "both", "either", "IoU"):
            table.add_column(column, justify="left" if column == "tensor" else "right")
        for entry in overlap["tensors"]:
            add_row(table, [entry["name"], f"{entry['first']:,}", f"{entry['second']:,}", f"{entry['intersection']:,}",
                            f"{entry['union']:,}", f"{entry['iou']:.4f}"])
        table.add_section()
        table.add_row("total", f"{overlap['first']:,}", f"{overlap['second']:,}", f"{overlap['intersection']:,}",
                      f"{overlap['union']:,}", f"{overlap['iou']:.4f}")
        stderr.print(table)
        if first_file.record.model_sha256 != second_file.record.model_sha256:
            stderr.print("note: the two masks were computed on different checkpoints")
    if json_output is not None:
        print_json({"first": first, "second": second, **overlap}, json_output)


@app.command("random")
@handle_errors
@with_options(MaskRandomConfig)
def random(
    given: dict,
    output: Annotated[str, typer.Option("--output", "-o", help="Mask to write (.safetensors; '-' for stdout).")],
    config: ConfigOption = None,
    quiet: QuietOption = False,
):
    """A random control: as many units per tensor as --like selects, drawn at random (seeded)."""
    cfg = resolve_config(MaskRandomConfig, config, given)
    if cfg.like is None:
        raise UserError(f"--like is required: the mask whose per-tensor counts the control copies; pass --like MASK, "
                        f"or set `like:` in {config or 'a --config YAML'}")
    like, seed = cfg.like, cfg.seed
    check_writable(output, "--output", {"--like": cfg.like, "--config": config})
    from unlearn_cli.io.mask import mask_bytes, mask_metadata, read_mask  # here: --help needs no torch
    from unlearn_cli.localize import NO_CRITERION, random_like

    reference = read_mask(cfg.like)
    recorded = reference.record
    control = random_like(reference.mask, {name: tensor.shape for name, tensor in reference.mask.items()}, seed)
    metadata = mask_metadata(
        strategy="random", criterion=NO_CRITERION, granularity=_or(recorded.granularity, "neuron"), budget=None,
        mask=control, model_sha256=_or(recorded.model_sha256, ""), forget_sha256=_or(recorded.forget_sha256, ""),
        seed=seed, config=config_dict(cfg), like_sha256=reference.sha256)
    write_output(output, mask_bytes(control, metadata))
    if not quiet:
        stderr.print(f"random control like {like} -> {output}: {metadata['selected']} of {metadata['total']} parameters")

