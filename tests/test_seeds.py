"""`--seeds` on `train`, `localize` and `apply`: one process builds a pool whose every file is bit-identical to the
same command run alone with `--seed S`; SPEC, templates and outputs are checked before any work."""

from __future__ import annotations

import hashlib
import json

import pytest
from safetensors import safe_open

from conftest import run_cli
from presets import mlp_flags
from unlearn_cli.cli.seeds import SeedRun, format_seeds, parse_seeds, run_seeds, seed_path
from unlearn_cli.errors import UserError
from unlearn_cli.io.checkpoint import load_checkpoint
from unlearn_cli.signals import Interrupted
from unlearn_cli.streams import write_output

TINY = mlp_flags(width=16, epochs=1)
APPLY = ("--method", "rft", "--epochs", "1", "--quiet")


def tensors_and_meta(path) -> tuple[dict, dict]:
    with safe_open(str(path), "pt") as file:
        return {key: file.get_tensor(key) for key in file.keys()}, dict(file.metadata())


def assert_same_run(pooled, alone):
    """Bit-identical tensors, and the same metadata but for the wall time."""
    (pooled_tensors, pooled_meta), (alone_tensors, alone_meta) = tensors_and_meta(pooled), tensors_and_meta(alone)
    assert pooled_tensors.keys() == alone_tensors.keys()
    for key in pooled_tensors:
        assert pooled_tensors[key].dtype == alone_tensors[key].dtype
        assert pooled_tensors[key].numpy().tobytes() == alone_tensors[key].numpy().tobytes(), key
    pooled_meta.pop("wall_time_s", None), alone_meta.pop("wall_time_s", None)
    assert pooled_meta == alone_meta


def ok(*arguments):
    result = run_cli(*arguments)
    assert result.exit_code == 0, result.output
    return result


def one_line_error(result) -> str:
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def pool(tmp_path_factory):
    """A forget set, then one `train --seeds 0-2`, one `localize --seeds 0-1` and one `apply --seeds 0-1`."""
    folder = tmp_path_factory.mktemp("pool")
    for name in ("models", "masks", "unlearned", "alone"):
        (folder / name).mkdir()
    forget = folder / "forget.json"
    ok("split", "--dataset", "digits", "--kind", "iid", "--fraction", "0.05", "-o", forget, "-q")
    ok("train", *TINY, "--seeds", "0-2", "-o", folder / "models" / "m-{seed}.safetensors")
    ok("localize", "--seeds", "0-1", "-m", folder / "models" / "m-{seed}.safetensors", "-f", forget,
       "--strategy", "del", "--budget", "0.3", "-q", "-o", folder / "masks" / "mask-{seed}.safetensors")
    ok("apply", "--seeds", "0-1", "-m", folder / "models" / "m-{seed}.safetensors", "-f", forget,
       "--mask", folder / "masks" / "mask-{seed}.safetensors", *APPLY,
       "-o", folder / "unlearned" / "u-{seed}.safetensors")
    return folder


# --- the SPEC ------------------------------------------------------------------------------------------------


def test_spec_forms_and_their_order():
    assert parse_seeds("0-3,7") == [0, 1, 2, 3, 7]
    assert parse_seeds("5, 0-2") == [5, 0, 1, 2]
    assert parse_seeds("4") == [4] and parse_seeds("2-2") == [2]
    assert format_seeds([0, 1, 2, 5, 7, 8]) == "0-2,5,7-8"
    assert seed_path("pool/m-{seed}.{seed}.safetensors", 3) == "pool/m-3.3.safetensors"
    assert seed_path("{other}.safetensors", 3) == "{other}.safetensors" and seed_path(None, 3) is None


@pytest.mark.parametrize("spec, words", [
    ("3-1", "runs backwards"), ("0,0", "seed 0 is named twice"), ("0-3,2", "seed 2 is named twice"),
    ("abc", "'abc' is not a seed or a range"), ("-1", "negative"), ("0,,1", "empty part"), ("", "names no seed"),
    ("0-99999999999999999999", "beyond 2^63 - 1"),
    ("0-9223372036854775807", "more than the limit of 4,096"),  # counted, never listed
])
def test_bad_specs_are_refused(spec, words):
    with pytest.raises(UserError, match="--seeds") as error:
        parse_seeds(spec)
    assert words in str(error.value)


# --- pools equal the commands run alone ----------------------------------------------------------------------


def test_train_pool_is_bit_identical_to_each_seed_alone(pool):
    assert sorted(path.name for path in (pool / "models").iterdir()) == [f"m-{s}.safetensors" for s in range(3)]
    for seed in range(3):
        alone = pool / "alone" / f"train-{seed}.safetensors"
        ok("train", *TINY, "--seed", seed, "-o", alone)
        assert_same_run(pool / "models" / f"m-{seed}.safetensors", alone)
        assert load_checkpoint(str(alone)).provenance.seed == seed


def test_train_oracle_pool(pool, tmp_path):
    forget = pool / "forget.json"
    ok("train", *TINY, "--exclude", forget, "--seeds", "1,2", "-o", tmp_path / "oracle-{seed}.safetensors")
    ok("train", *TINY, "--exclude", forget, "--seed", "2", "-o", tmp_path / "alone.safetensors")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["alone.safetensors", "oracle-1.safetensors",
                                                                "oracle-2.safetensors"]
    assert_same_run(tmp_path / "oracle-2.safetensors", tmp_path / "alone.safetensors")


def test_localize_pool_masks_each_seed_s_model(pool, tmp_path):
    for seed in range(2):
        mask, model = pool / "masks" / f"mask-{seed}.safetensors", pool / "models" / f"m-{seed}.safetensors"
        assert tensors_and_meta(mask)[1]["model_sha256"] == sha256(model)
        alone = tmp_path / f"mask-{seed}.safetensors"
        ok("localize", "-m", model, "-f", pool / "forget.json", "--strategy", "del", "--budget", "0.3", "--seed", seed,
           "-q", "-o", alone)
        assert mask.read_bytes() == alone.read_bytes()


def test_apply_pool_unlearns_each_seed_s_model(pool, tmp_path):
    assert sorted(path.name for path in (pool / "unlearned").iterdir()) == ["u-0.safetensors", "u-1.safetensors"]
    for seed in range(2):
        model = pool / "models" / f"m-{seed}.safetensors"
        unlearned = load_checkpoint(str(pool / "unlearned" / f"u-{seed}.safetensors"))
        assert unlearned.provenance.parent_sha256 == sha256(model) and unlearned.provenance.seed == seed
        assert unlearned.provenance.mask_sha256 == sha256(pool / "masks" / f"mask-{seed}.safetensors")
    alone = tmp_path / "u-1.safetensors"
    ok("apply", "-m", pool / "models" / "m-1.safetensors", "-f", pool / "forget.json",
       "--mask", pool / "masks" / "mask-1.safetensors", *APPLY, "--seed", "1", "-o", alone)
    assert_same_run(pool / "unlearned" / "u-1.safetensors", alone)


def test_an_input_without_seed_is_shared(pool, tmp_path):
    model = pool / "models" / "m-0.safetensors"
    ok("apply", "--seeds", "3,5", "-m", model, "-f", pool / "forget.json", *APPLY,
       "-o", tmp_path / "u-{seed}.safetensors")
    for seed in (3, 5):
        unlearned = load_checkpoint(str(tmp_path / f"u-{seed}.safetensors"))
        assert unlearned.provenance.parent_sha256 == sha256(model) and unlearned.provenance.seed == seed
    assert json.loads(tensors_and_meta(tmp_path / "u-5.safetensors")[1]["config"])["model"] == str(model)


def test_one_seed_may_write_stdout(pool):
    result = run_cli("localize", "--seeds", "1", "-m", pool / "models" / "m-{seed}.safetensors", "-f",
                     pool / "forget.json", "--budget", "0.3", "-q", "-o", "-")
    assert result.exit_code == 0, result.stderr
    assert result.stdout_bytes == (pool / "masks" / "mask-1.safetensors").read_bytes()


# --- refusals: one line, exit 1, nothing written ---------------------------------------------------------------


def refusals(pool, out):
    models, forget = str(pool / "models" / "m-{seed}.safetensors"), pool / "forget.json"
    return [
        (("train", *TINY, "--seeds", "0-1", "-o", out / "m.safetensors"), "put {seed} in it, e.g. -o 'pool/"),
        (("train", *TINY, "--seeds", "0-1", "--seed", "3", "-o", out / "m-{seed}.safetensors"),
         "--seed 3 and --seeds '0-1' cannot be used together"),
        (("train", *TINY, "--seeds", "3-1", "-o", out / "m-{seed}.safetensors"), "range 3-1 runs backwards"),
        (("train", *TINY, "--seeds", "0,0", "-o", out / "m-{seed}.safetensors"), "seed 0 is named twice"),
        (("train", *TINY, "--seeds", "abc", "-o", out / "m-{seed}.safetensors"), "'abc' is not a seed or a range"),
        (("train", *TINY, "--seeds", "0-2", "-o", out / "m-{seed}.safetensors"), "UNLEARN_MAX_SEEDS"),  # limit 2
        (("train", *TINY, "--seeds", "0-1", "-o", "-"), "-o - (stdout) takes one file"),
        (("train", *TINY, "-o", out / "m-{seed}.safetensors"), "which only --seeds fills in"),
        (("train", *TINY, "--seeds", "0-1", "-o", out / "{seed}" / ".." / "m.safetensors"),
         "gives seeds 0 and 1 the same file"),
        (("apply", "--seeds", "0-1", "-m", models, "-f", forget, *APPLY, "-o", models), "is the same file as --model"),
        (("apply", "--seeds", "0-2", "-m", models, "-f", forget, *APPLY, "-o", out / "u-{seed}.safetensors"),
         "names 3 seeds, more than the limit of 2"),
        (("apply", "--seeds", "0-1", "-m", models, "-f", forget, "--mask", pool / "masks" / "mask-0.safetensors",
          *APPLY, "-o", out / "u-{seed}.safetensors"), "--allow-other-model"),
        (("apply", "--seeds", "0-1", "-m", "-", "-f", forget, *APPLY, "-o", out / "u-{seed}.safetensors"),
         "--model - (stdin) can be read once only"),
        (("apply", "--seeds", "2,3", "-m", models, "-f", forget, *APPLY, "-o", out / "u-{seed}.safetensors"),
         "--model of seed 3 not found"),
        (("localize", "--seeds", "0-1", "-m", models, "-f", forget, "--strategy", "random", "-q",
          "-o", pool / "masks" / "mask-{seed}.safetensors", "--like", pool / "masks" / "mask-{seed}.safetensors"),
         "is the same file as --like"),
    ]


def test_refusals_are_one_line_and_write_nothing(pool, tmp_path, monkeypatch):
    monkeypatch.setenv("UNLEARN_MAX_SEEDS", "2")
    before = {path: path.read_bytes() for path in pool.rglob("*") if path.is_file()}
    for arguments, words in refusals(pool, tmp_path):
        line = one_line_error(run_cli(*arguments))
        assert words in line, (arguments, line)
        assert list(tmp_path.iterdir()) == [], arguments
    assert {path: path.read_bytes() for path in pool.rglob("*") if path.is_file()} == before


def test_a_model_of_other_data_stops_the_pool_and_says_what_is_written(pool, tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    (models / "m-0.safetensors").write_bytes((pool / "models" / "m-0.safetensors").read_bytes())
    ok("train", *TINY, "--dataset-option", "train_subset=600", "-o", models / "m-1.safetensors")
    line = one_line_error(run_cli("localize", "--seeds", "0-1", "-m", models / "m-{seed}.safetensors",
                                  "-f", pool / "forget.json", "--budget", "0.3", "-q",
                                  "-o", tmp_path / "mask-{seed}.safetensors"))
    assert "--model of seed 1 was trained on digits {" in line and "seeds 0 are written" in line
    assert "run the rest with --seeds 1" in line
    written = tensors_and_meta(tmp_path / "mask-0.safetensors")[0]
    expected = tensors_and_meta(pool / "masks" / "mask-0.safetensors")[0]
    assert all(written[key].equal(expected[key]) for key in expected) and written.keys() == expected.keys()
    assert not (tmp_path / "mask-1.safetensors").exists()


def test_an_interruption_names_the_seeds_written():
    runs = [SeedRun(seed, f"m-{seed}", {}) for seed in (0, 1, 2, 3)]

    def work(run):
        if run.seed == 2:
            raise Interrupted(2)

    with pytest.raises(Interrupted) as caught:
        run_seeds(runs, work)
    message = caught.value.message()
    assert message.startswith("interrupted by SIGINT; the files of seeds 0-1 are written") and "--seeds 2-3" in message
    assert Interrupted(15).message() == ("interrupted by SIGTERM; no output was written and existing files are "
                                         "untouched")


def test_a_seed_whose_file_is_written_is_done_though_interrupted_before_it_returns(tmp_path):
    """The signal can land after the rename and before the seed's work returns (its closing line): the file is
    complete, so the message names it and the rest start after it."""
    runs = [SeedRun(seed, str(tmp_path / f"m-{seed}"), {}) for seed in (0, 1, 2, 3)]

    def work(run):
        write_output(run.output, b"complete")
        if run.seed == 1:
            raise Interrupted(2)

    with pytest.raises(Interrupted) as caught:
        run_seeds(runs, work)
    assert caught.value.message() == ("interrupted by SIGINT; the files of seeds 0-1 are written and complete, the "
                                      "rest are not; run the rest with --seeds 2-3")
