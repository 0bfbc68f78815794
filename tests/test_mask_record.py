"""The typed record of a mask's metadata: every field survives a write and a read, older files read as they did,
and a damaged field is a one-line error naming it."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from unlearn_cli.errors import UserError
from unlearn_cli.io.mask import MaskRecord, mask_bytes, mask_metadata, read_mask, typed_mask_metadata

MASK = {"weight": torch.tensor([[True, False], [False, False]]), "bias": torch.tensor([True, False])}  # 2 of 6

EVERY_FIELD = dict(strategy="del", criterion="weighted-grad", granularity="neuron", budget=0.5, topk=0.1, seed=7,
                   work_forward=144, work_backward=96, config={"budget": 0.5, "strategy": "del"},
                   model_sha256="a" * 64, forget_sha256="b" * 64, like_sha256="c" * 64)


def written(tmp_path, meta: dict[str, str], name: str = "mask.safetensors") -> str:
    path = tmp_path / name
    path.write_bytes(mask_bytes(MASK, meta))
    return str(path)


def test_every_field_round_trips_through_a_file(tmp_path):
    record = read_mask(written(tmp_path, mask_metadata(mask=MASK, **EVERY_FIELD))).record
    assert all(value is not None for value in dataclasses.asdict(record).values())  # a new field joins this test
    assert record == MaskRecord(**EVERY_FIELD, selected=2, total=6, selected_fraction=2 / 6,
                                unlearn_version=record.unlearn_version)
    assert MaskRecord.from_meta(record.to_meta(), "again") == record
    assert record.localize_units == 144 + 2 * 96  # a backward pass counts twice a forward one
    assert record.describe() == "strategy del, criterion weighted-grad, granularity neuron, budget 0.5"


def test_a_mask_without_a_budget_records_an_empty_one(tmp_path):
    path = written(tmp_path, mask_metadata(mask=MASK, strategy="random", criterion="none", granularity="parameter",
                                           budget=None, model_sha256="", forget_sha256="", seed=0))
    mask_file = read_mask(path)
    assert mask_file.meta["budget"] == "" and mask_file.record.budget is None
    assert mask_file.record.model_sha256 == ""  # text as stored: "" is not "not recorded"
    assert mask_file.record.describe() == "strategy random, criterion none, granularity parameter"


def test_an_older_mask_reads_as_before(tmp_path):
    """A mask from before topk, the localization's work, --like and the config were recorded, with a key this
    version does not know: the missing fields are None, the unknown key is kept for `mask info --json`."""
    meta = {"format": "unlearn-mask/1", "strategy": "salun", "criterion": "grad", "granularity": "parameter",
            "budget": "0.5", "selected": "2", "total": "6", "selected_fraction": "0.3333333333333333",
            "model_sha256": "d" * 64, "forget_sha256": "e" * 64, "seed": "0", "unlearn_version": "0.0.1",
            "note": "kept"}
    mask_file = read_mask(written(tmp_path, meta))
    assert mask_file.meta == meta
    assert mask_file.record == MaskRecord(strategy="salun", criterion="grad", granularity="parameter", budget=0.5,
                                          selected=2, total=6, selected_fraction=2 / 6, model_sha256="d" * 64,
                                          forget_sha256="e" * 64, seed=0, unlearn_version="0.0.1")
    assert mask_file.record.localize_units is None
    assert typed_mask_metadata(meta) == {**meta, "budget": 0.5, "selected": 2, "total": 6,
                                         "selected_fraction": 2 / 6, "seed": 0}


@pytest.mark.parametrize("key, value, kind", [
    ("budget", "half", "a finite number"), ("selected_fraction", "inf", "a finite number"),
    ("topk", "", "a finite number"), ("selected", "2.0", "an integer"), ("total", "six", "an integer"),
    ("seed", "", "an integer"), ("work_forward", "-1", "an integer"), ("work_backward", str(2**63), "an integer"),
    ("config", "[1]", "a JSON object"),
])
def test_a_damaged_field_is_one_line_naming_it(tmp_path, key, value, kind):
    meta = {**mask_metadata(mask=MASK, **EVERY_FIELD), key: value}
    path = written(tmp_path, meta)
    with pytest.raises(UserError) as caught:
        read_mask(path)
    assert str(caught.value) == (f"{path}: mask metadata {key!r} is {value!r}, not {kind}; the file is damaged, "
                                 f"recompute it with `unlearn localize`")
