"""The pipeline layer: the steps the commands chain (read and check the inputs, localize, unlearn, score, write),
as functions that take checked configurations and return what a command renders. Commands parse options and call
these; tests, the demo and the recipes call them the same way.

Each module is one step or one pipeline: import from the module (`from unlearn_cli.runs.localize import
compute_mask`); this package exports nothing itself.
"""
