"""Print the settings `unlearn tune` chose, as BUDGET@LR@EPOCHS (`_` for one the pipeline does not have), so
that the recipes' Makefile can name and build the runs at those settings.

Usage:
    python chosen_settings.py work/tuned-free/iid/del.yaml      # -> 0.3@0.05@16
"""

from __future__ import annotations

import sys

import yaml


def chosen(document: dict) -> str:
    apply = document.get("apply") or {}
    localize = document.get("localize") or {}
    if not isinstance(document.get("tune"), dict) or "method" not in apply:
        raise ValueError("not a file written by `unlearn tune` (it has no tune: section or no apply: method)")
    values = (localize.get("budget"), apply.get("lr"), apply.get("epochs"))
    return "@".join("_" if value is None else str(value) for value in values)


def main(argv: list[str]) -> None:
    if len(argv) != 1:
        sys.exit("usage: python chosen_settings.py TUNED.yaml")
    try:
        with open(argv[0], encoding="utf-8") as stream:
            print(chosen(yaml.safe_load(stream) or {}))
    except (OSError, ValueError, yaml.YAMLError) as error:
        sys.exit(f"error: {argv[0]}: {error}")


if __name__ == "__main__":
    main(sys.argv[1:])
