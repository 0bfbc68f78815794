"""`unlearn info`: show what a checkpoint is (architecture, data, provenance, the training-time confidence it
records) after validating it fully.

Usage:
    unlearn info model.safetensors
    unlearn info model.safetensors --json -
    unlearn info model.safetensors --quiet      # validate only: exit 0, or 1 with the reason

`--config FILE.yaml` is accepted like every command's; `info` has no options besides its argument and --json
(an output), so the file must be empty.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Annotated, Optional

import typer
from rich.table import Table

from unlearn_cli.cli.common import ConfigOption, QuietOption, handle_errors, print_json, stderr
from unlearn_cli.config import resolve_config
from unlearn_cli.streams import check_writable


@dataclass
class InfoConfig:
    """`info` has no options besides its argument and --json (an output)."""


@handle_errors
def info(
    model: Annotated[str, typer.Argument(help="Checkpoint (.safetensors), or '-' for stdin.")],
    json_output: Annotated[Optional[str], typer.Option("--json", help="Write the metadata as JSON to FILE or '-'.")] = None,
    config: ConfigOption = None,
    quiet: QuietOption = False,
):
    """Load a checkpoint strictly and print its metadata and parameter count."""
    resolve_config(InfoConfig, config, {})
    if json_output is not None:
        check_writable(json_output, "--json", {"MODEL": model, "--config": config}, binary=False)
    from unlearn_cli.io.checkpoint import load_checkpoint  # here: --help needs no torch

    checkpoint = load_checkpoint(model)
    parameters = sum(p.numel() for p in checkpoint.model.parameters())
    document = {**checkpoint.typed_metadata(), "sha256": checkpoint.sha256, "parameters": parameters}
    if checkpoint.training_confidence is not None:  # the memorization proxy's record (docs/memorization.md)
        recorded = checkpoint.training_confidence[~checkpoint.training_confidence.isnan()]
        document["training_confidence"] = {"examples": len(checkpoint.training_confidence), "trained_on": len(recorded),
                                           "mean": float(recorded.mean()) if len(recorded) else None}
    if json_output is not None:
        print_json(document, json_output)
        return
    if quiet:
        return
    table = Table(title=checkpoint.source, show_header=False)
    for key in sorted(document):
        value = document[key]
        table.add_row(key, value if isinstance(value, str) else json.dumps(value, separators=(",", ":")))
    stderr.print(table)
