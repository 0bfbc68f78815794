"""Hostile and broken files for every reader: each is refused with a one-line UserError naming the file.

Property tests feed random bytes, truncations and forged headers; hand-written cases cover the
attacks that matter (a header claiming an enormous tensor, a pickle posing as a batch, forged metadata).
"""

from __future__ import annotations

import json
import struct
import tracemalloc

import pytest
import torch
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import run_cli
from unlearn_cli.cli.train import TrainConfig
from unlearn_cli.config import resolve_config
from unlearn_cli.errors import UserError
from unlearn_cli.io.checkpoint import load_checkpoint
from unlearn_cli.io.forget import read_forget_set
from unlearn_cli.io.mask import parse_mask
from unlearn_cli.io.safetensors_file import dump_safetensors, nonfinite, parse_safetensors, safetensors_arrays

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def forged(header: dict, body: bytes = b"") -> bytes:
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + body


def refuses(reader, data: bytes, source: str = "file.safetensors") -> str:
    with pytest.raises(UserError) as caught:
        reader(data, source)
    message = str(caught.value)
    assert "\n" not in message and source in message
    return message


@FAST
@given(st.binary(max_size=400))
def test_random_bytes_never_crash_the_safetensors_reader(data):
    try:
        parse_safetensors(data, "random.safetensors")
    except UserError as error:
        assert "random.safetensors" in str(error) and "\n" not in str(error)


@FAST
@given(st.data())
def test_every_truncation_of_a_checkpoint_is_refused(tiny_run, data):
    whole = tiny_run["original"].read_bytes()
    cut = data.draw(st.integers(min_value=0, max_value=len(whole) - 1))
    with pytest.raises(UserError, match="not a valid safetensors file|not an unlearn checkpoint"):
        load_checkpoint("cut.safetensors", data=whole[:cut])


@FAST
@given(st.dictionaries(st.sampled_from(["format", "arch", "arch_kwargs", "num_classes", "input_shape", "dataset"]),
                       st.text(max_size=20), min_size=1))
def test_forged_metadata_is_refused_or_loads_exactly(tiny_run, changes):
    from safetensors import safe_open

    with safe_open(str(tiny_run["original"]), "pt") as file:
        meta = dict(file.metadata())
        tensors = {key: file.get_tensor(key) for key in file.keys()}
    meta.update(changes)
    try:
        checkpoint = load_checkpoint("forged.safetensors", data=dump_safetensors(tensors, meta))
    except UserError as error:
        assert str(error).startswith("forged.safetensors: ") and "\n" not in str(error)
    else:  # a forgery that still describes the same model exactly is harmless
        assert checkpoint.meta["arch"] == "mlp"


def test_header_claiming_an_enormous_tensor_allocates_nothing():
    data = forged({"w": {"dtype": "F32", "shape": [2**20, 2**20], "data_offsets": [0, 2**42]}}, b"\0" * 64)
    tracemalloc.start()
    message = refuses(parse_safetensors, data)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert "claims bytes 0..4398046511104 but the data section has 64" in message
    assert peak < 1_000_000


@pytest.mark.parametrize("header, message", [
    ({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 8]}}, "shape [4] of F32 does not match its 8 bytes"),
    ({"w": {"dtype": "PICKLE", "shape": [1], "data_offsets": [0, 1]}}, "unknown dtype 'PICKLE'"),
    ({"w": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}}, "malformed shape"),
    ({"w": {"dtype": "F32", "shape": [1]}}, "malformed entry"),
    ({"__metadata__": {"format": 3}}, "metadata is not a string-to-string map"),
    ({"w": {"dtype": "F32", "shape": [1], "data_offsets": [8, 4]}}, "claims bytes 8..4"),
])
def test_forged_headers(header, message):
    assert message in refuses(parse_safetensors, forged(header, b"\0" * 16))


def test_header_length_beyond_the_file():
    assert "header claims 1000 bytes but the file has 2" in refuses(parse_safetensors, struct.pack("<Q", 1000) + b"{}")


def test_mask_with_non_bool_dtype():
    data = dump_safetensors({"w": torch.ones(3)}, {"format": "unlearn-mask/1"})
    assert "mask tensor w has dtype torch.float32; mask tensors must be bool" in refuses(parse_mask, data, "m.safetensors")


def test_nan_and_inf_weights_are_refused(tiny_run, tmp_path):
    from safetensors import safe_open

    with safe_open(str(tiny_run["original"]), "pt") as file:
        meta = dict(file.metadata())
        tensors = {key: file.get_tensor(key) for key in file.keys()}
    for bad in (float("nan"), float("inf"), -float("inf")):
        for dtype in (torch.float32, torch.bfloat16, torch.float16, torch.float64):
            tensors["5.bias"] = torch.full_like(tensors["5.bias"], 0.5, dtype=dtype)
            tensors["5.bias"][3] = bad
            data = dump_safetensors(tensors, meta)
            if dtype == torch.float32:
                with pytest.raises(UserError, match="tensor 5.bias holds NaN or Inf values"):
                    load_checkpoint("x.safetensors", data=data)
            (tmp_path / "x.safetensors").write_bytes(data)  # info reads the file without building the model
            result = run_cli("info", tmp_path / "x.safetensors")
            assert result.exit_code == 1 and result.stderr.count("\n") == 1, (bad, dtype, result.output)
            assert f"x.safetensors: tensor 5.bias holds NaN or Inf values" in result.stderr, (bad, dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.int32,
                                   torch.bool])
def test_numpy_views_find_exactly_the_values_torch_calls_non_finite(dtype):
    """`nonfinite` judges a view by its bits (numpy has no bfloat16): the same verdict as torch.isfinite on the
    loaded tensor, for the extremes, subnormals and every special value."""
    values = [0.0, -0.0, 1.0, -2.5, 1e-45, 1e-40, 3e38, -3e38, 6e4, 1e-7]
    specials = [float("nan"), float("inf"), -float("inf")] if dtype.is_floating_point else []
    for extra in [[], *[[value] for value in specials]]:
        tensor = torch.tensor(values + extra).to(dtype)
        arrays, _ = safetensors_arrays(dump_safetensors({"t": tensor}, {}), "t.safetensors")
        assert nonfinite(*arrays["t"]) == (not bool(torch.isfinite(tensor).all())), (dtype, extra)


@pytest.mark.parametrize("dtype", [torch.bool, torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64,
                                   torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_every_dtype_unlearn_writes_reads_back_as_the_reference_library_reads_it(dtype):
    from safetensors.torch import load

    tensors = {"a": (torch.arange(-6, 6) * 0.75).to(dtype).reshape(3, 4), "b": torch.ones((), dtype=dtype),
               "c": torch.zeros(0, 2, dtype=dtype)}
    data = dump_safetensors(tensors, {"k": "v"})
    ours, meta = parse_safetensors(data, "t.safetensors")
    assert meta == {"k": "v"}
    for name, reference in {**tensors, **load(data)}.items():
        assert ours[name].dtype == reference.dtype and ours[name].shape == reference.shape
        assert torch.equal(ours[name], reference), (dtype, name)


def test_a_mask_whose_bool_bytes_are_not_0_or_1_is_refused():
    data = bytearray(dump_safetensors({"w": torch.ones(3, dtype=torch.bool)}, {"format": "unlearn-mask/1"}))
    data[-1] = 2  # counted as 2 selected scalars by a sum
    assert "mask tensor w holds bytes other than 0 and 1" in refuses(parse_mask, bytes(data), "m.safetensors")


def test_overlapping_or_gapped_tensor_ranges_are_refused():
    overlap = {"a": {"dtype": "U8", "shape": [4], "data_offsets": [0, 4]},
               "b": {"dtype": "U8", "shape": [4], "data_offsets": [2, 6]}}
    assert "tensor 'b' starts at byte 2 of the data section, not at 4" in refuses(parse_safetensors,
                                                                                 forged(overlap, b"\0" * 6))
    gap = {"a": {"dtype": "U8", "shape": [4], "data_offsets": [0, 4]}}
    assert "the tensors end at byte 4 but the data section has 8" in refuses(safetensors_arrays, forged(gap, b"\0" * 8))


@FAST
@given(st.lists(st.integers(min_value=-5, max_value=30), max_size=12))
def test_index_lists_are_accepted_exactly_when_valid(tmp_path, values):
    path = tmp_path / "forget.txt"
    path.write_text(" ".join(map(str, values)))
    valid = bool(values) and min(values) >= 0 and max(values) < 20 and len(set(values)) == len(values)
    if valid:
        assert read_forget_set(str(path), num_train=20).indices.tolist() == sorted(values)
    else:
        with pytest.raises(UserError) as caught:
            read_forget_set(str(path), num_train=20)
        assert str(caught.value).startswith(f"{path}: ")


@FAST
@given(st.binary(max_size=200))
def test_random_bytes_as_a_forget_set(tmp_path, data):
    path = tmp_path / "forget.bin"
    path.write_bytes(data)
    try:
        forget = read_forget_set(str(path), num_train=1000)
    except UserError as error:
        assert str(error).startswith(f"{path}: ") and "\n" not in str(error)
    else:
        assert forget.indices.min() >= 0 and forget.indices.max() < 1000


@pytest.mark.parametrize("document, message", [
    ('{"format": "unlearn-forget/1", "indices": [1, 1.5]}', "indices must be integers"),
    ('{"format": "unlearn-forget/1", "indices": [true]}', "indices must be integers"),
    ('{"format": "unlearn-forget/1", "indices": "1,2"}', "has no 'indices' list"),
    ('{"format": "unlearn-forget/1", "indices": [1], "num_train": 5}', "made for a training set of 5 examples"),
    ("[1, 2.5]", "indices must be integers"),
    ("[1, 2", "malformed forget-set JSON"),
    ("\u0661 2", "is not an integer index; a text forget set is integers in ASCII digits"),
    ('{"format": "unlearn-forget/1", "indices": [1], ', "malformed forget-set JSON"),
])
def test_malformed_forget_json(tmp_path, document, message):
    path = tmp_path / "forget.json"
    path.write_text(document)
    with pytest.raises(UserError, match=message):
        read_forget_set(str(path), num_train=20)


def test_npy_with_pickled_objects_is_refused_without_unpickling(tmp_path):
    import numpy as np

    np.save(tmp_path / "f.npy", np.array([object()], dtype=object), allow_pickle=True)
    with pytest.raises(UserError, match="a .npy forget set must be a 1-D integer array, got object"):
        read_forget_set(str(tmp_path / "f.npy"))


@FAST
@given(st.dictionaries(st.text(max_size=8), st.one_of(st.integers(), st.text(max_size=5), st.floats(), st.none(),
                                                      st.lists(st.integers(), max_size=3)), max_size=4))
def test_yaml_configs_with_unknown_keys_or_wrong_types(tmp_path, document):
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(document))
    try:
        config = resolve_config(TrainConfig, path, {})
    except UserError as error:
        assert str(error).startswith(f"{path}: ") and "\n" not in str(error)
    else:
        assert all(key.replace("-", "_") in vars(config) for key in document)


@pytest.mark.parametrize("text, message", [
    ("epochs: [1\n", "malformed YAML"),
    ("- 1\n- 2\n", "a config file must be a YAML mapping"),
    ("!!python/object/apply:os.system ['echo hacked']\n", "malformed YAML"),
    ("lr: true\n", "option 'lr': expected float, got bool True"),
])
def test_yaml_config_cases(tmp_path, text, message):
    path = tmp_path / "config.yaml"
    path.write_text(text)
    with pytest.raises(UserError, match=message):
        resolve_config(TrainConfig, path, {})
