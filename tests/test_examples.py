"""The reproductions in examples/: every recipe's `make smoke` runs its whole pipeline (one optimizer step per
stage, synthetic data of the recipe's shape) and leaves parseable results; the learning-rate choice."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from unlearn_cli.evaluate.results import validate_results

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
SELECT_LR = EXAMPLES / "select_lr.py"

# recipe -> {forget set: run names} that its smoke run must leave (run files: <forget set>/s0/<name>.json)
EXPECTED_RUNS = {
    "fashion-mnist": {"noniid": ["del_b0.3_lr0.03", "del_b0.3_lr0.05", "ssd"]},
    "cifar10-resnet18": {"noniid": ["del_b0.3_lr0.015"]},
    "svhn-vit": {"noniid": ["del_b0.3_lr0.015"]},
    "imagenet100-resnet50": {"iid": ["del_b0.3_lr0.015"]},
}
LEARNING_RATE_GRIDS = {"fashion-mnist": ["0.03", "0.05"]}  # smoke grids with more than one value

needs_make = pytest.mark.skipif(shutil.which("make") is None, reason="needs GNU make")


def unlearn_command() -> str:
    script = Path(sys.executable).with_name("unlearn")
    return str(script) if script.exists() else f"{sys.executable} -m unlearn_cli"


def clean_environment() -> dict:
    """The environment without an enclosing make's flags (a `make test` must not leak its variables or -j)."""
    return {key: value for key, value in os.environ.items()
            if key not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES", "MAKEFILES")}


def make_smoke(recipe: str, work: Path, log) -> subprocess.Popen:
    return subprocess.Popen(
        ["make", "-C", str(EXAMPLES / recipe), "smoke", f"SMOKE_DIR={work}", f"UNLEARN={unlearn_command()}",
         f"PYTHON={sys.executable}"],
        stdout=log, stderr=subprocess.STDOUT, env=clean_environment())


@pytest.fixture(scope="module")
def smoke_runs(tmp_path_factory) -> dict:
    """recipe -> (exit code, output, work folder); the recipes run side by side (each step is mostly start-up)."""
    if shutil.which("make") is None:
        pytest.skip("needs GNU make")
    started = {}
    for recipe in EXPECTED_RUNS:
        work, log = tmp_path_factory.mktemp(recipe), tmp_path_factory.mktemp("logs") / f"{recipe}.log"
        with log.open("w") as stream:
            started[recipe] = (make_smoke(recipe, work, stream), work, log)
    return {recipe: (process.wait(timeout=900), log.read_text(), work) for recipe, (process, work, log) in started.items()}


def test_every_recipe_is_covered():
    assert sorted(EXPECTED_RUNS) == sorted(path.parent.name for path in EXAMPLES.glob("*/Makefile"))


@needs_make
@pytest.mark.parametrize("recipe", sorted(EXPECTED_RUNS))
def test_smoke_runs_the_pipeline(smoke_runs, recipe):
    code, output, work = smoke_runs[recipe]
    assert code == 0, f"make -C examples/{recipe} smoke failed:\n{output[-4000:]}"
    for forget_set, names in EXPECTED_RUNS[recipe].items():
        assert json.loads((work / f"forget-{forget_set}.json").read_text())
        for name in names:
            document = json.loads((work / forget_set / "s0" / f"{name}.json").read_text())
            (result,) = validate_results(document, name)
            assert result["oracle"] is not None and result["average_gap"] is not None
            assert result["seed"] == 0
            if name.startswith("del_"):
                assert (result["method"], result["strategy"], result["budget"]) == ("rft", "del", 0.3)
                assert 0 < result["fraction_changed"] <= 1


@needs_make
@pytest.mark.parametrize("recipe", sorted(EXPECTED_RUNS))
def test_smoke_writes_the_report(smoke_runs, recipe):
    code, output, work = smoke_runs[recipe]
    assert code == 0, output[-4000:]
    report = (work / "results" / "report.md").read_text()
    assert report.startswith("# ") and "| del | rft | 0.3 |" in report
    for forget_set in EXPECTED_RUNS[recipe]:
        assert f"## Forget set: {forget_set}" in report
        assert (work / "results" / f"curves-{forget_set}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = (work / "results" / "report.csv").read_text().splitlines()
    assert rows[0].startswith("forget_kind,") and len(rows) >= 3  # header, the runs, the oracle
    assert "oracle" in (work / "results" / "report.txt").read_text()
    chosen = (work / "lr" / "del.txt").read_text().strip()
    assert chosen in LEARNING_RATE_GRIDS.get(recipe, ["0.015"])
    # the raw data behind the report: every run's results file, the tuning runs included, copied as is
    for forget_set, names in EXPECTED_RUNS[recipe].items():
        for name in [*names, "original"]:
            run = Path(forget_set) / "s0" / f"{name}.json"
            assert (work / "results" / "runs" / run).read_bytes() == (work / run).read_bytes()


@needs_make
def test_smoke_resumes_without_redoing_work(smoke_runs):
    code, output, work = smoke_runs["fashion-mnist"]
    assert code == 0, output[-4000:]
    before = {path: path.stat().st_mtime_ns for path in work.rglob("*") if path.is_file()}
    rerun = subprocess.run(["make", "-C", str(EXAMPLES / "fashion-mnist"), "smoke", f"SMOKE_DIR={work}",
                            f"UNLEARN={unlearn_command()}", f"PYTHON={sys.executable}"],
                           capture_output=True, text=True, env=clean_environment(), timeout=300)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert " apply " not in rerun.stdout and " train " not in rerun.stdout
    assert {path: path.stat().st_mtime_ns for path in work.rglob("*") if path.is_file()} == before


@needs_make
def test_a_new_grid_value_is_tuned_on_the_next_run(smoke_runs):
    code, output, work = smoke_runs["fashion-mnist"]
    assert code == 0, output[-4000:]
    # the smoke's own variables (see SMOKE_VARIABLES in examples/fashion-mnist/Makefile), one more DEL learning rate
    dry_run = subprocess.run(["make", "-n", "-C", str(EXAMPLES / "fashion-mnist"), "tune", "CONFIGS=configs/smoke",
                              f"WORK={work}", "SEEDS=0", "DATA_ROOT=", "DEVICE=cpu", "FORGET_SETS=noniid", "BUDGETS=0.3",
                              "PIPELINES=del ssd", "del.lrs=0.03 0.05 0.08", f"UNLEARN={unlearn_command()}",
                              f"PYTHON={sys.executable}"], capture_output=True, text=True, env=clean_environment(), timeout=120)
    assert dry_run.returncode == 0, dry_run.stdout + dry_run.stderr
    assert "--lr 0.08" in dry_run.stdout and "del_b0.3_lr0.08.json" in dry_run.stdout
    assert "--lr 0.05" not in dry_run.stdout  # the runs already made are not repeated
    assert "select_lr.py del" in dry_run.stdout


def results_file(folder: Path, name: str, *gaps) -> Path:
    path = folder / name
    path.write_text(json.dumps({"format": "unlearn-results/1", "results": [{"average_gap": gap} for gap in gaps]}))
    return path


def select_lr(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SELECT_LR), *map(str, args)], capture_output=True, text=True)


def test_select_lr_takes_the_smallest_mean_gap_over_forget_sets(tmp_path):
    # lr 0.03: gaps 1.0 and 3.0 (mean 2.0); lr 0.05: 2.5 and 2.5 (mean 2.5); lr 0.08: 0.5 and a diverged run
    pairs = [f"0.03={results_file(tmp_path, 'a.json', 1.0)}", f"0.03={results_file(tmp_path, 'b.json', 3.0)}",
             f"0.05={results_file(tmp_path, 'c.json', 2.5)}", f"0.05={results_file(tmp_path, 'd.json', 2.5)}",
             f"0.08={results_file(tmp_path, 'e.json', 0.5)}", f"0.08={results_file(tmp_path, 'f.json', None)}"]
    done = select_lr("del", tmp_path / "lr.txt", *pairs)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "lr.txt").read_text() == "0.03\n"
    assert "lr 0.03: mean average gap 2.00 over 2 runs  <- chosen" in done.stdout


def test_select_lr_keeps_the_value_as_written_and_the_first_on_a_tie(tmp_path):
    done = select_lr("ft", tmp_path / "lr.txt", f"1e-2={results_file(tmp_path, 'a.json', 4.0)}",
                     f"0.010={results_file(tmp_path, 'b.json', 4.0)}")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "lr.txt").read_text() == "1e-2\n"


def test_select_lr_refuses_when_every_run_diverged(tmp_path):
    done = select_lr("neggrad", tmp_path / "lr.txt", f"0.1={results_file(tmp_path, 'a.json', None)}")
    assert done.returncode == 1
    assert "no learning rate of 0.1 gave a finite average gap" in done.stderr
    assert not (tmp_path / "lr.txt").exists()


def test_select_lr_rejects_other_files(tmp_path):
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"format": "something-else"}))
    done = select_lr("del", tmp_path / "lr.txt", f"0.05={other}")
    assert done.returncode == 1 and "not an unlearn-results/1 file" in done.stderr
