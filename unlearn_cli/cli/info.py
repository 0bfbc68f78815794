"""`unlearn info`: show what a checkpoint is (architecture, data, provenance) after validating it fully.

Usage:
    unlearn info model.safetensors
    unlearn info model.safetensors --json -
"""

from __future__ import annotations

import json
from typing import Annotated, Optional

import typer
from rich.table import Table

from unlearn_cli.cli.common import handle_errors, print_json, stderr
from unlearn_cli.io.checkpoint import load_checkpoint


@handle_errors
def info(
    model: Annotated[str, typer.Argument(help="Checkpoint (.safetensors), or '-' for stdin.")],
    json_output: Annotated[Optional[str], typer.Option("--json", help="Write the metadata as JSON to FILE or '-'.")] = None,
):
    """Load a checkpoint strictly and print its metadata and parameter count."""
    checkpoint = load_checkpoint(model)
    parameters = sum(p.numel() for p in checkpoint.model.parameters())
    document = {**checkpoint.meta, "sha256": checkpoint.sha256, "parameters": parameters}
    if json_output is not None:
        print_json(document, json_output)
        return
    table = Table(title=checkpoint.source, show_header=False)
    for key in sorted(document):
        value = document[key]
        if key == "config":
            value = json.dumps(json.loads(value), separators=(",", ":"))
        table.add_row(key, str(value))
    stderr.print(table)
