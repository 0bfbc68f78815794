"""`unlearn info`: show what a checkpoint is (architecture, data, provenance, the training-time confidence it
records) after validating the file: its header, its metadata, its training record and that its weights are finite,
without building the model (no torch: it starts in a fraction of a second). `--load` also builds the architecture
and loads the tensors into it strictly, as every other command does.

Usage:
    unlearn info model.safetensors
    unlearn info model.safetensors --json -
    unlearn info model.safetensors --quiet      # validate only: exit 0, or 1 with the reason
    unlearn info model.safetensors --load       # and check that the tensors fit the architecture (imports torch)

`--config FILE.yaml` is accepted like every command's; its one key is `load` (--json is an output).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Annotated, Optional

import typer
from rich.table import Table

from unlearn_cli.cli.common import ConfigOption, QuietOption, add_row, handle_errors, print_json, stderr, terminal_text
from unlearn_cli.cli.options import with_options
from unlearn_cli.config import option, resolve_config
from unlearn_cli.streams import check_writable


@dataclass
class InfoConfig:
    load: bool = option(False, "Also build the architecture and load the tensors into it strictly, as every other "
                               "command does (imports torch: slower).", switch=True)


@handle_errors
@with_options(InfoConfig)
def info(
    given: dict,
    model: Annotated[str, typer.Argument(help="Checkpoint (.safetensors), or '-' for stdin.")],
    json_output: Annotated[Optional[str], typer.Option("--json", help="Write the metadata as JSON to FILE or '-'.")] = None,
    config: ConfigOption = None,
    quiet: QuietOption = False,
):
    """Validate a checkpoint file and print its metadata and parameter count (--load: also load it strictly).

    Without --load the model is not built: the header, the metadata, the training record and the finiteness of the
    weights are checked, not that the tensors fit the architecture.
    """
    cfg = resolve_config(InfoConfig, config, given)
    if json_output is not None:
        check_writable(json_output, "--json", {"MODEL": model, "--config": config}, binary=False)
    if cfg.load:
        from unlearn_cli.io.checkpoint import load_checkpoint  # imports torch

        checkpoint = load_checkpoint(model)
    else:
        from unlearn_cli.io.checkpoint import read_checkpoint_file

        checkpoint = read_checkpoint_file(model)
    document = {**checkpoint.typed_metadata(), "sha256": checkpoint.sha256, "parameters": checkpoint.parameters}
    if checkpoint.training_confidence is not None:  # the memorization proxy's record (docs/memorization.md)
        document["training_confidence"] = _summary(checkpoint.training_confidence)
    if json_output is not None:
        print_json(document, json_output)
        return
    if quiet:
        return
    table = Table(title=terminal_text(checkpoint.source), show_header=False)
    for key in sorted(document):
        value = document[key]
        add_row(table, [key, value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))])
    stderr.print(table)


def _summary(record) -> dict:
    """Examples, those trained on (not NaN) and their mean confidence, of a training record (numpy or torch); the mean
    summed in float64, so the same however the record was read (a float32 sum's rounding depends on its order)."""
    import numpy as np

    values = np.asarray(record, dtype=np.float32)
    recorded = values[~np.isnan(values)]
    return {"examples": len(values), "trained_on": len(recorded),
            "mean": float(recorded.mean(dtype=np.float64)) if len(recorded) else None}
