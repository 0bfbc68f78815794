"""Every file reader is bounded in memory per input byte, and reports refuse numbers that cannot be.

Each reader (results, audit, forget set, mask header, checkpoint header, memorization file) reads hostile files of
SIZE bytes (one long string, a string of escapes, one wide character before a long string, strings with one each,
deep nesting, many empty lists, many numbers, many short strings) in a child process whose address space is capped at what torch and the app
hold plus PER_BYTE × SIZE + PER_VALUE × the values limit + BASE bytes (tests/probe_runner.py): each is refused in one
line, never killed and never out of memory. The files are those of benchmarks/bench_readers.py, which prints the peak memory per byte of each.

Results and audit files holding NaN, ±inf or numbers out of their range are refused naming the file and the field;
text from files cannot add rows to a Markdown table, nor a file name split an error line.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import run_cli
from unlearn_cli.limits import limit
from test_report import record, write
from test_report_cost import audit

HERE = Path(__file__).parent
spec = importlib.util.spec_from_file_location("bench_readers", HERE.parent / "benchmarks" / "bench_readers.py")
bench_readers = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench_readers)

SIZE = 24 * 2**20  # bytes of each hostile file
# the cap beyond what the child holds: PER_BYTE per input byte (the file, its text, kept 1 byte a character by
# escaping the characters beyond U+FFFF, and a string, 4 bytes a character after one of them: 6) and PER_VALUE per
# value the values limit allows (a short string: about 60)
PER_BYTE, PER_VALUE, BASE = 7, 64, 128 * 2**20
# (reader, shape) -> what the refusal says; every other pair must say `OTHERWISE[reader]`
TOO_MANY = "values, beyond the limit of 8,388,608"
NESTED = "levels deep, beyond the limit of 32"
OTHERWISE = {"results": "results[0].model is missing", "audit": ".forget is missing",
             "forget set": "forget-set JSON has no 'indices' list", "mask header": "tensor 'pad' has a malformed entry",
             "checkpoint header": "tensor 'pad' has a malformed entry",
             "memorization": "'dataset' must be a name and 'dataset_kwargs' an object"}
# numbers (6.3 million at this size) and words are under the values limit: parsed, then refused by the schema
EXPECTED = {"deep": NESTED, "lists": TOO_MANY, ("forget set", "numbers"): "indices must be integers",
            ("forget set", "words"): "indices must be integers", ("forget set", "wides"): "indices must be integers"}


def memory_probes(folder: Path) -> list[tuple[str, list[str], str]]:
    """(id, command line, what the error says) of every reader fed every hostile shape, and a few more."""
    cases = []
    for reader in bench_readers.READERS:
        for shape in bench_readers.SHAPES:
            _, arguments = bench_readers.hostile_file(reader, shape, SIZE, folder)
            expected = EXPECTED.get((reader, shape), EXPECTED.get(shape, OTHERWISE[reader]))
            cases.append((f"{reader}-{shape}", arguments, expected))
    exclude = ["train", "--dataset", "digits", "--arch", "mlp", "-q", "-o", str(folder / "never-written"), "--exclude"]
    (folder / "many.txt").write_bytes(b"7 " * (SIZE // 2))
    header = f"{{'descr': '|i1', 'fortran_order': False, 'shape': ({SIZE},), }}".encode()
    header += b" " * (-(len(header) + 11) % 64) + b"\n"
    (folder / "many.npy").write_bytes(b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header + bytes(SIZE))
    metadata = {"format": "unlearn-checkpoint/1", "notes": "x" * SIZE}
    (folder / "long-metadata.safetensors").write_bytes(bench_readers._safetensors(metadata, b"null"))
    return cases + [
        ("forget-set-text", [*exclude, str(folder / "many.txt")], TOO_MANY),
        ("forget-set-npy", [*exclude, str(folder / "many.npy")], TOO_MANY),
        ("checkpoint-metadata-string", ["info", str(folder / "long-metadata.safetensors")],
         "metadata field 'notes' size in bytes 25,165,824 exceeds the limit of 1,048,576"),
    ]


def snapshot(folder: Path) -> dict[str, str]:
    return {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in sorted(folder.iterdir())}


@pytest.fixture(scope="module")
def memory_outcomes(tmp_path_factory):
    folder = tmp_path_factory.mktemp("memory")
    cases = memory_probes(folder)
    before = snapshot(folder)
    requests = [{"id": name, "args": arguments, "timeout": 120} for name, arguments, _ in cases]
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(HERE.parent), "CUDA_VISIBLE_DEVICES": ""}
    headroom = PER_BYTE * SIZE + PER_VALUE * limit("json_values") + BASE
    child = subprocess.run([sys.executable, str(HERE / "probe_runner.py"), "--headroom", str(headroom)],
                           input=json.dumps(requests), capture_output=True, text=True, timeout=1200, env=environment)
    assert child.returncode == 0, child.stderr[-3000:]  # never killed
    return json.loads(child.stdout), {name: expected for name, _, expected in cases}, before, snapshot(folder)


MEMORY_PROBES = [f"{reader}-{shape}" for reader in bench_readers.READERS for shape in bench_readers.SHAPES] + [
    "forget-set-text", "forget-set-npy", "checkpoint-metadata-string"]


@pytest.mark.parametrize("name", MEMORY_PROBES)
def test_a_hostile_file_is_refused_within_its_memory_bound(memory_outcomes, name):
    results, expected, _, _ = memory_outcomes
    outcome = results[name]
    assert outcome["exception"] is None and outcome["exit_code"] == 1, outcome
    assert outcome["stderr"].startswith("error: ") and outcome["stderr"].count("\n") == 1, outcome["stderr"][:300]
    assert "MemoryError" not in outcome["stderr"] and expected[name] in outcome["stderr"], outcome["stderr"][:300]
    assert outcome["stdout_bytes"] == 0


def test_memory_probes_wrote_nothing_and_left_inputs_intact(memory_outcomes):
    _, _, before, after = memory_outcomes
    assert after == before


WIDE_SIZE = 96 * 2**20  # large enough that the file's text at 4 bytes a character (384 MiB) would pass the cap


@pytest.mark.parametrize("shape", ["wide", "wides"])
def test_a_wide_character_does_not_widen_the_whole_text(tmp_path, shape):
    """A results file of ASCII and characters beyond U+FFFF is read within 7 bytes a byte: its text stays 1 byte a
    character (the wide ones escaped); only the strings that hold one take 4. Before, text and string took 4 each:
    9 bytes a byte, over this cap."""
    _, arguments = bench_readers.hostile_file("results", shape, WIDE_SIZE, tmp_path)
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(HERE.parent), "CUDA_VISIBLE_DEVICES": ""}
    child = subprocess.run([sys.executable, str(HERE / "probe_runner.py"), "--headroom", str(7 * WIDE_SIZE + BASE)],
                           input=json.dumps([{"id": shape, "args": arguments, "timeout": 120}]), capture_output=True,
                           text=True, timeout=600, env=environment)
    assert child.returncode == 0, child.stderr[-3000:]
    outcome = json.loads(child.stdout)[shape]
    assert outcome["exit_code"] == 1 and "MemoryError" not in outcome["stderr"], outcome
    assert "results[0].model is missing" in outcome["stderr"], outcome["stderr"][:300]


# --- numbers that cannot be -------------------------------------------------------------------------------------

def _results_with(tmp_path, change) -> Path:
    document = {"format": "unlearn-results/1", "unlearn_version": "0", "results": [record(seed=0), record(seed=1)]}
    change(document["results"][1])
    path = tmp_path / "results.json"
    path.write_text(json.dumps(document))  # NaN and Infinity as Python's json writes them
    return path


def _audit_with(tmp_path, change) -> Path:
    document = audit("rft", 0.5, (0.4, 0.6))
    change(document)
    path = tmp_path / "audit.json"
    path.write_text(json.dumps(document))
    return path


def _set(path: str, value):
    def change(document):
        *parents, last = path.split(".")
        for part in parents:
            document = document[int(part)] if isinstance(document, list) else document[part]
        document[last] = value
    return change


RESULT_PROBES = [
    ("metrics.forget_accuracy", float("nan"), "results[1].metrics.forget_accuracy is nan, not a finite number in 0…100 (%)"),
    ("metrics.test_accuracy", 250.0, "results[1].metrics.test_accuracy is 250.0, outside 0…100 (%)"),
    ("metrics.mia_correctness", -1.0, "results[1].metrics.mia_correctness is -1.0, outside 0…100 (%)"),
    ("average_gap", float("inf"), "results[1].average_gap is inf, not a finite number in 0…100 (%)"),
    ("budget", -0.3, "results[1].budget is -0.3, outside (0, 1]"),
    ("budget", float("inf"), "results[1].budget is inf, not a finite number in (0, 1]"),
    ("fraction_changed", 7.5, "results[1].fraction_changed is 7.5, outside 0…1"),
    ("wall_time_s", float("-inf"), "results[1].wall_time_s is -inf, not a finite number in ≥ 0"),
    ("oracle.metrics.test_accuracy", float("nan"), "results[1].oracle.metrics.test_accuracy is nan"),
    ("seed", float("nan"), "results[1].seed must be an integer"),
    ("model.arch", 1e999, "results[1].model.arch is not a finite number"),
]
AUDIT_PROBES = [
    ("rows.0.forget_score", 7.5, "rows[0].forget_score is 7.5, outside 0…1"),
    ("rows.0.forget_score", float("nan"), "rows[0].forget_score is nan, not a finite number in 0…1"),
    ("rows.0.attack_auc", float("inf"), "rows[0].attack_auc is inf, not a finite number in 0…1"),
    ("rows.0.intervals.forget_score", [0.4, float("nan")], "rows[0].intervals.forget_score[1] is nan, not a finite number in 0…1"),
    ("rows.0.accuracy.first.test", 250.0, "rows[0].accuracy.first.test is 250.0, outside 0…100 (%)"),
    ("rows.0.kl_gaussian.mean", -1.0, "rows[0].kl_gaussian.mean is -1.0, outside ≥ 0"),
    ("pools.unlearned.budget", -0.5, "pools.unlearned.budget is -0.5, outside (0, 1]"),
    ("rows.0.normalized_score", {"value": float("inf")}, "rows[0].normalized_score.value is not a finite number"),
]


@pytest.mark.parametrize("kind, field, value, message", [("results", *probe) for probe in RESULT_PROBES]
                         + [("audit", *probe) for probe in AUDIT_PROBES])
@pytest.mark.parametrize("output_format", ["table", "csv"])
def test_a_number_that_cannot_be_is_refused_naming_the_file_and_field(tmp_path, kind, field, value, message,
                                                                       output_format):
    path = (_results_with if kind == "results" else _audit_with)(tmp_path, _set(field, value))
    content, output = path.read_bytes(), tmp_path / "report.out"
    result = run_cli("report", path, "--format", output_format, "-o", output)
    assert result.exit_code == 1, result.output
    assert result.stderr == f"error: {path}: {message}" + result.stderr.split(message, 1)[1]
    assert result.stderr.count("\n") == 1 and not output.exists() and path.read_bytes() == content


def test_json_nan_and_infinity_literals_are_refused(tmp_path):
    path = tmp_path / "results.json"
    path.write_text(json.dumps(json.loads(write(tmp_path / "a.json", record()).read_text()))
                    .replace('"wall_time_s": 2.0', '"wall_time_s": Infinity'))
    result = run_cli("report", path)
    assert result.exit_code == 1 and "results[0].wall_time_s is inf, not a finite number in ≥ 0" in result.stderr


# --- text from files ----------------------------------------------------------------------------------------------

def test_a_name_cannot_add_rows_or_cells_to_a_markdown_table(tmp_path):
    hostile = "rft | injected\n| forged | row |"
    path = write(tmp_path / "a.json", record(method=hostile, seed=0), record(method=hostile, seed=1))
    result = run_cli("report", path, "--format", "markdown")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == 4  # header, rule, the pipeline, the oracle
    cells = lambda line: len(re.findall(r"(?<!\\)\|", line))  # noqa: E731  (pipes that separate cells)
    assert all(cells(line) == cells(lines[0]) for line in lines)
    assert "rft \\| injected\\n\\| forged \\| row \\|" in result.stdout


def test_a_file_name_with_a_newline_does_not_split_the_error_line(tmp_path):
    path = tmp_path / "two\nlines.json"
    path.write_text("{not json")
    result = run_cli("report", path)
    assert result.exit_code == 1
    assert result.stderr.count("\n") == 1 and "two\\nlines.json: malformed results JSON" in result.stderr


def test_the_scan_counts_what_parsing_builds(monkeypatch):
    """Depth and values are counted outside strings, past escaped quotes; a document is refused above the limit."""
    from unlearn_cli.errors import UserError
    from unlearn_cli.limits import JsonShape, json_shape, load_json

    text = b'{"a": [1, 2, {"b": "[,:{"}], "c\\"[": []}'  # 10 values (3 keys); one per , : [ { outside strings, plus one
    assert json_shape(text) == JsonShape(depth=3, values=11)
    monkeypatch.setenv("UNLEARN_MAX_JSON_VALUES", "11")
    assert load_json(text, "x.json", "x") == {"a": [1, 2, {"b": "[,:{"}], 'c"[': []}
    with pytest.raises(UserError, match="x.json: x holds more than 11 values, beyond the limit of 11 .*UNLEARN_MAX_JSON"):
        load_json(b"[" + b"1," * 11 + b"1]", "x.json", "x")


@pytest.mark.parametrize("chunk", [1, 2, 3, 5])
def test_the_scan_carries_strings_and_escapes_across_chunks(monkeypatch, chunk):
    import unlearn_cli.limits as limits

    text = b'["\\\\", "\\"]", {"k": [["\\\\\\"[["]]}]'
    monkeypatch.setattr(limits, "SCAN_CHUNK", chunk)
    assert limits.json_shape(text) == limits.JsonShape(depth=4, values=8)


@pytest.mark.parametrize("chunk", [1, 2, 3, 5, 2**20])
def test_the_scan_counts_the_characters_that_decoding_builds(monkeypatch, chunk):
    """Continuation bytes, characters in U+0100…U+FFFF and beyond U+FFFF, in keys and in strings of nested lists and
    objects alike, an escape counting as its bytes; the counts give the decoded text's length."""
    import unlearn_cli.limits as limits

    text = '{"kéy😀": ["Ā\\\\😀\\n", {"x": "\\"€"}], "😀": "a\\u00e9"}'
    monkeypatch.setattr(limits, "SCAN_CHUNK", chunk)
    shape = limits.json_shape(text.encode())
    # é: 1 continuation byte (U+00E9 stays 1 byte a character); Ā, €: U+0100…U+FFFF (1 and 2); three 😀 (3 each)
    assert shape == limits.JsonShape(depth=3, values=9, continuation=13, bmp=2, wide=3)
    assert shape.characters(len(text.encode())) == len(text)
    assert limits.json_shape(b'["ab", "\\u20ac"]') == limits.JsonShape(depth=1, values=3)  # all ASCII: none


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 2**20])
def test_a_narrowed_text_parses_to_the_same_value(monkeypatch, chunk):
    """Characters beyond U+FFFF (and, where that is narrower, all beyond U+00FF) written as escapes read back the same
    in strings and keys, after escaped backslashes and beside escapes already there; the text is narrower."""
    import unlearn_cli.limits as limits

    monkeypatch.setattr(limits, "SCAN_CHUNK", chunk)
    cases = ['"😀' + "x" * 40 + '"', '{"k😀": ["a\\\\😀", "\\ud83d😀", "\\ud83dĀ", "\\uD83D\\uDE00😀"]}',
             '["é€' + "x" * 40 + '😀", "漢字😀漢字"]', '"Ā' + "x" * 40 + '"', '["😀😀😀", "é"]']
    for text in cases:
        raw = text.encode()
        assert limits.load_json(raw, "x.json", "x") == json.loads(text), text
        narrow = limits._narrow_text(raw, limits.json_shape(raw))
        assert json.loads(narrow) == json.loads(text)
        assert sys.getsizeof(narrow) <= sys.getsizeof(text), text
    assert max(map(ord, limits._narrow_text(cases[0].encode(), limits.json_shape(cases[0].encode())))) < 0x80


def test_an_escape_cannot_make_a_malformed_document_well_formed():
    """`\\😀` is no JSON escape: written as `\\\\ud83d…` it would read as a backslash; it is refused as json refuses it."""
    from unlearn_cli.errors import UserError
    from unlearn_cli.limits import load_json

    for text, line in [('["a",\n "\\😀' + "x" * 40 + '"]', 2), ('"\\\\\\Ā' + "x" * 40 + '"', 1)]:
        with pytest.raises(UserError, match=rf"x.json: malformed x JSON \(Invalid \\escape at line {line}\)"):
            load_json(text.encode(), "x.json", "x")
        with pytest.raises(json.JSONDecodeError, match="Invalid \\\\escape"):
            json.loads(text)


def test_a_name_is_not_read_as_terminal_markup(tmp_path):
    hostile = "[/]rft[bold]\nrow"
    path = write(tmp_path / "a.json", record(method=hostile, seed=0), record(method=hostile, seed=1))
    result = run_cli("report", path)
    assert result.exit_code == 0, result.output
    assert "del + [/]rft[bold]\\nrow" in result.stderr
