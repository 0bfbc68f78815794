"""The reproductions in examples/: every recipe's `make smoke` runs its whole pipeline (both tuning modes in one; one
optimizer step per stage, synthetic data of the recipe's shape) and leaves parseable results; the helpers that
read `unlearn tune`'s choice and compare the two modes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from test_report_paired import record, write
from unlearn_cli.evaluate.results import validate_results

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
CHOSEN_SETTINGS = EXAMPLES / "chosen_settings.py"
COMPARE_TUNING = EXAMPLES / "compare_tuning.py"
REGRET = EXAMPLES / "regret.py"

# recipe -> {forget set: runs of pipelines that do not train} that its smoke run must leave besides DEL's, which is
# named by the settings `unlearn tune` chose (run files: <forget set>/s0/<name>.json)
EXPECTED_RUNS = {
    "fashion-mnist": {"noniid": ["ssd", "retrain_c10_lr0.1"]},  # retrain @ 10: the smoke's cap
    "cifar10-resnet18": {"noniid": []},
    "svhn-vit": {"noniid": []},
    "imagenet100-resnet50": {"iid": []},
}
BOTH_MODES = {"fashion-mnist"}  # recipes whose smoke tunes with the oracle too (SMOKE_GOAL = both)
LEARNING_RATE_GRIDS = {"fashion-mnist": [0.03, 0.05, 0.05 * (0.05 / 0.03), 0.03 * (0.03 / 0.05)]}  # the smoke grid, extended

SMOKE_CAP = "10"  # `make smoke`'s cost cap (SMOKE_CAPS in examples/common.mk): one step costs more than its recipe
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


CORRECTIVE = "fashion-mnist corrective"  # `make corrective-smoke`, the poison scenario, beside the recipes' smokes


@pytest.fixture(scope="module")
def smoke_runs(tmp_path_factory) -> dict:
    """recipe -> (exit code, output, work folder); the recipes run side by side (each step is mostly start-up)."""
    if shutil.which("make") is None:
        pytest.skip("needs GNU make")
    started = {}
    for recipe in [*EXPECTED_RUNS, CORRECTIVE]:
        work = tmp_path_factory.mktemp(recipe.replace(" ", "-"))
        log = tmp_path_factory.mktemp("logs") / f"{recipe.replace(' ', '-')}.log"
        with log.open("w") as stream:
            if recipe == CORRECTIVE:
                process = subprocess.Popen(
                    ["make", "-C", str(EXAMPLES / "fashion-mnist"), "corrective-smoke", f"SMOKE_DIR={work}",
                     "CORRECTIVE_SCENARIOS=poison", f"UNLEARN={unlearn_command()}", f"PYTHON={sys.executable}"],
                    stdout=stream, stderr=subprocess.STDOUT, env=clean_environment())
            else:
                process = make_smoke(recipe, work, stream)
            started[recipe] = (process, work, log)
    return {recipe: (process.wait(timeout=900), log.read_text(), work) for recipe, (process, work, log) in started.items()}


def test_every_recipe_is_covered():
    assert sorted(EXPECTED_RUNS) == sorted(path.parent.name for path in EXAMPLES.glob("*/Makefile"))


def tuned_del(work: Path, forget_set: str, mode: str = "free", cap: str | None = SMOKE_CAP) -> Path:
    """The file of DEL's search on a forget set: del-c10.yaml at the smoke's cap, del.yaml without one."""
    return work / f"tuned-{mode}" / forget_set / (f"del-c{cap}.yaml" if cap else "del.yaml")


def del_run(work: Path, forget_set: str, mode: str = "free", cap: str | None = SMOKE_CAP) -> str:
    """The DEL run a smoke's tuning chose, e.g. del_c10_b0.3_lr0.03_e1 (del_b0.3_lr0.03_e1 without a cap)."""
    budget, lr, epochs = Path(f"{tuned_del(work, forget_set, mode, cap)}.txt").read_text().split("@")
    return f"del{f'_c{cap}' if cap else ''}_b{budget}_lr{lr}_e{epochs.strip()}"


@pytest.mark.slow
@needs_make
@pytest.mark.parametrize("recipe", sorted(EXPECTED_RUNS))
def test_smoke_runs_the_pipeline(smoke_runs, recipe):
    code, output, work = smoke_runs[recipe]
    assert code == 0, f"make -C examples/{recipe} smoke failed:\n{output[-4000:]}"
    for forget_set, names in EXPECTED_RUNS[recipe].items():
        assert json.loads((work / f"forget-{forget_set}.json").read_text())
        validation = json.loads((work / f"forget-{forget_set}-validation.json").read_text())
        assert validation["indices"] != json.loads((work / f"forget-{forget_set}.json").read_text())["indices"]
        modes = ["free", "oracle"] if recipe in BOTH_MODES else ["free"]
        for name in [*names, *(del_run(work, forget_set, mode) for mode in modes)]:
            document = json.loads((work / forget_set / "s0" / f"{name}.json").read_text())
            (result,) = validate_results(document, name)
            assert result["oracle"] is not None and result["average_gap"] is not None
            assert result["seed"] == 0
            assert result["mia"]["test_part"]["part"] == "reported"  # what tuning never looked at
            if name.startswith("del_"):
                assert (result["method"], result["strategy"], result["budget"]) == ("rft", "del", 0.3)
                assert 0 < result["fraction_changed"] <= 1


@pytest.mark.slow
@needs_make
@pytest.mark.parametrize("recipe", sorted(EXPECTED_RUNS))
def test_smoke_tunes_on_the_validation_forget_set(smoke_runs, recipe):
    code, output, work = smoke_runs[recipe]
    assert code == 0, output[-4000:]
    for forget_set in EXPECTED_RUNS[recipe]:
        for mode in ["free", "oracle"] if recipe in BOTH_MODES else ["free"]:
            tuned = yaml.safe_load(tuned_del(work, forget_set, mode).read_text())
            assert tuned["tune"]["objective"] == ("oracle-free" if mode == "free" else "oracle")
            assert tuned["tune"]["max_cost"] == tuned["apply"]["max_cost"] == int(SMOKE_CAP)
            validation = json.loads((work / f"forget-{forget_set}-validation.json").read_text())
            assert tuned["tune"]["forget_sha256"] == validation["sha256"]
            assert tuned["tune"]["search_space"]["epochs"] == [1]
            assert tuned["apply"]["lr"] in LEARNING_RATE_GRIDS.get(recipe, [0.015])
            assert (tuned["tune"]["oracle_sha256"] is None) == (mode == "free")


@pytest.mark.slow
@needs_make
@pytest.mark.parametrize("recipe", sorted(EXPECTED_RUNS))
def test_smoke_writes_the_reports(smoke_runs, recipe):
    code, output, work = smoke_runs[recipe]
    assert code == 0, output[-4000:]
    both = recipe in BOTH_MODES
    for folder in ["results", "results/oracle-tuned"] if both else ["results"]:
        report = (work / folder / "report.md").read_text()
        assert report.startswith("# ") and "| del | rft | 0.3 |" in report
        for forget_set in EXPECTED_RUNS[recipe]:
            assert f"## Forget set: {forget_set}" in report
        rows = (work / folder / "report.csv").read_text().splitlines()
        assert rows[0].startswith("forget_kind,") and len(rows) >= 3  # header, the runs, the oracle
        assert "oracle" in (work / folder / "report.txt").read_text()
    if EXPECTED_RUNS[recipe][next(iter(EXPECTED_RUNS[recipe]))]:  # DEL beside other pipelines: paired against it
        assert f"Paired against baseline `del + rft @ 0.3 @ {SMOKE_CAP}`" in (work / "results" / "report.md").read_text()
    pareto = (work / "results" / "pareto.md").read_text()  # cost against quality, retrain @ F the reference
    assert "F*" in pareto and (work / "results" / "pareto.png").read_bytes()[:4] == b"\x89PNG"
    if recipe == "fashion-mnist":
        assert f"reference curve (retraining from scratch at a fraction F of the recipe): retrain @ {SMOKE_CAP}" in pareto
    if both:
        tuning = (work / "results" / "tuning.md").read_text()
        assert tuning.startswith("# Tuning without an oracle") and "| del | 0.3 / " in tuning
    else:
        assert not (work / "results" / "oracle-tuned").exists()
    # the raw data behind the report: every run's results file and every search, copied as is
    for forget_set, names in EXPECTED_RUNS[recipe].items():
        for name in [*names, del_run(work, forget_set), "original"]:
            run = Path(forget_set) / "s0" / f"{name}.json"
            assert (work / "results" / "runs" / run).read_bytes() == (work / run).read_bytes()
        for mode in ["free", "oracle"] if both else ["free"]:
            search = tuned_del(work, forget_set, mode).relative_to(work)
            assert (work / "results" / search).read_bytes() == (work / search).read_bytes()


@pytest.mark.slow
@needs_make
def test_corrective_smoke_unlearns_the_known_part_of_a_poison(smoke_runs):
    from unlearn_cli.io.checkpoint import load_checkpoint
    from unlearn_cli.io.forget import read_forget_set

    code, output, work = smoke_runs[CORRECTIVE]
    assert code == 0, f"make -C examples/fashion-mnist corrective-smoke failed:\n{output[-4000:]}"
    scenario = work / "corrective-poison"
    whole = read_forget_set(str(scenario / "forget-poison.json"))
    half = read_forget_set(str(scenario / "forget-poison-half.json"))
    assert whole.indices.tolist() == half.indices.tolist() and whole.manipulation.sha256 == half.manipulation.sha256
    assert len(half.seen().indices) == max(1, round(0.5 * len(half.indices)))
    original = load_checkpoint(str(scenario / "original-s0.safetensors")).provenance
    assert original.manipulated_sha256 == whole.manipulation.sha256
    for forget_set, forget in (("poison", whole), ("poison-half", half)):
        oracle = load_checkpoint(str(scenario / forget_set / "s0" / "oracle.safetensors")).provenance
        assert oracle.excluded_sha256 == whole.sha256 and oracle.manipulated_sha256 is None  # clean, without all of it
        validation = read_forget_set(str(scenario / f"forget-{forget_set}-validation.json"))
        tuned_on = load_checkpoint(str(scenario / f"{forget_set}-validation" / "s0" / "original.safetensors"))
        assert tuned_on.provenance.manipulated_sha256 == validation.manipulation.sha256 != whole.manipulation.sha256
        tuned = yaml.safe_load(tuned_del(scenario, forget_set, cap=None).read_text())  # its protocol has no caps
        assert tuned["tune"]["forget_sha256"] == validation.seen().sha256  # the known part of the validation set
        for name in ("ssd", del_run(scenario, forget_set, cap=None), "original"):
            (result,) = validate_results(json.loads((scenario / forget_set / "s0" / f"{name}.json").read_text()), name)
            assert result["forget"]["known"]["sha256"] == forget.seen().sha256
            assert result["forget"]["size"] == len(whole.indices)
            assert {"repaired_accuracy", "remembered_accuracy", "attack_success_rate"} <= set(result["metrics"])
            assert result["oracle"]["metrics"]["attack_success_rate"] is not None
    report = (work / "results" / "corrective.md").read_text()
    assert report.startswith("# Corrective unlearning") and "### Forget set: poison-half" in report
    assert "| attack success |" in report


@pytest.mark.slow
@needs_make
def test_smoke_resumes_without_redoing_work(smoke_runs):
    code, output, work = smoke_runs["fashion-mnist"]
    assert code == 0, output[-4000:]
    before = {path: path.stat().st_mtime_ns for path in work.rglob("*") if path.is_file()}
    rerun = subprocess.run(["make", "-C", str(EXAMPLES / "fashion-mnist"), "smoke", f"SMOKE_DIR={work}",
                            f"UNLEARN={unlearn_command()}", f"PYTHON={sys.executable}"],
                           capture_output=True, text=True, env=clean_environment(), timeout=300)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert " apply " not in rerun.stdout and " train " not in rerun.stdout and " tune -m " not in rerun.stdout
    assert {path: path.stat().st_mtime_ns for path in work.rglob("*") if path.is_file()} == before


@pytest.mark.slow
@needs_make
def test_a_new_grid_value_is_tuned_on_the_next_run(smoke_runs):
    code, output, work = smoke_runs["fashion-mnist"]
    assert code == 0, output[-4000:]
    # the smoke's own variables (see SMOKE_VARIABLES in examples/fashion-mnist/Makefile and `smoke` in
    # examples/common.mk), one more DEL learning rate
    dry_run = subprocess.run(["make", "-n", "-C", str(EXAMPLES / "fashion-mnist"), "tune", "CONFIGS=configs/smoke",
                              f"WORK={work}", "SEEDS=0", "DATA_ROOT=", "DEVICE=cpu", "FORGET_SETS=noniid", "BUDGETS=0.3",
                              "EPOCHS=1", "TUNE_FLAGS=--param max_steps=1", "PIPELINES=del ssd", f"CAPS={SMOKE_CAP}",
                              "del.lrs=0.03 0.05 0.08", f"UNLEARN={unlearn_command()}", f"PYTHON={sys.executable}"],
                             capture_output=True, text=True, env=clean_environment(), timeout=120)
    assert dry_run.returncode == 0, dry_run.stdout + dry_run.stderr
    assert "--grid lr=0.03,0.05,0.08" in dry_run.stdout and f"tuned-free/noniid/del-c{SMOKE_CAP}.yaml" in dry_run.stdout
    assert " train " not in dry_run.stdout  # the original is not trained again


@pytest.mark.slow
@needs_make
def test_smoke_audit_builds_pools_and_audits_them(smoke_runs):
    """`make audit` on the smoke's files: pools of 4 synthetic models at the smoke's chosen DEL settings."""
    code, output, work = smoke_runs["fashion-mnist"]
    assert code == 0, output[-4000:]
    audit = subprocess.run(["make", "-C", str(EXAMPLES / "fashion-mnist"), "audit", "CONFIGS=configs/smoke",
                            f"WORK={work}", f"RESULTS={work}/results", "SEEDS=0", "DATA_ROOT=", "DEVICE=cpu",
                            "FORGET_SETS=noniid", "BUDGETS=0.3", "EPOCHS=1", "PIPELINES=del ssd", "del.lrs=0.03 0.05",
                            "LOOP_FLAGS=--max-steps 1", "POOL=4", "AUDIT_CAP_PIPELINES=del", "AUDIT_PIPELINES=ssd",
                            f"CAPS={SMOKE_CAP}", f"UNLEARN={unlearn_command()}", f"PYTHON={sys.executable}"],
                           capture_output=True, text=True, env=clean_environment(), timeout=300)
    assert audit.returncode == 0, audit.stdout[-3000:] + audit.stderr[-3000:]
    assert "--seeds 0-3" in audit.stdout and "--seeds 4-7" in audit.stdout  # the ceiling: oracles of other seeds
    # DEL at its choice under the cap, in a pool named by it; ssd (untuned) at its one run
    assert sorted(path.name for path in (work / "pool-4" / "noniid" / f"del-c{SMOKE_CAP}").iterdir()) == [
        f"unlearned-{seed}.safetensors" for seed in range(4)]  # the masks are removed once applied
    assert f"--max-cost {SMOKE_CAP}" in audit.stdout and (work / "pool-4" / "noniid" / "ssd").is_dir()
    document = json.loads((work / "results" / "audit-4" / f"noniid-del-c{SMOKE_CAP}.json").read_text())
    assert document["rows"][0]["models"] == [4, 4] and document["pools"]["unlearned"]["strategy"] == "del"
    assert document["pools"]["ceiling"]["size"] == 4 and (work / "results" / "audit-4" / "noniid-ssd.json").is_file()
    report = (work / "results" / "audit-4.md").read_text()  # a pool size of its own: the committed 32 stay
    assert "| noniid:" in report and "| del + rft @ 0.3 | forget | 4 + 4 |" in report
    assert "| original | forget | 4 + 4 |" in report and "| independent oracles | forget | 4 + 4 |" in report
    assert "| ssd | forget | 4 + 4 |" in report

    def dry_run(*variables: str) -> subprocess.CompletedProcess:
        return subprocess.run(["make", "-n", "-C", str(EXAMPLES / "fashion-mnist"), "audit", "CONFIGS=configs/smoke",
                               f"WORK={work}", f"RESULTS={work}/results", "SEEDS=0", "FORGET_SETS=noniid",
                               "BUDGETS=0.3", "EPOCHS=1", "PIPELINES=del ssd", "del.lrs=0.03 0.05",
                               "AUDIT_CAP_PIPELINES=del", "AUDIT_PIPELINES=", f"CAPS={SMOKE_CAP}",
                               f"UNLEARN={unlearn_command()}", *variables],
                              capture_output=True, text=True, env=clean_environment(), timeout=120)

    challenge = dry_run("POOL=512", "DEVICE=cuda")  # the challenge's scale: planned in folders of its own
    assert challenge.returncode == 0, challenge.stdout[-3000:] + challenge.stderr[-3000:]
    assert "--seeds 0-511" in challenge.stdout and "--device cuda" in challenge.stdout
    assert f"{work}/pool-512/original/original-{{seed}}.safetensors" in challenge.stdout
    assert f"{work}/results/audit-512.md" in challenge.stdout and f"{work}/results/audit.md" not in challenge.stdout
    wrong = dry_run("POOL=work/pool")
    assert wrong.returncode != 0
    assert "POOL=work/pool: give the number of models per pool, e.g. POOL=512" in wrong.stderr


def tuned_file(path: Path, objective: str, budget, lr, epochs) -> Path:
    document = {"apply": {"method": "rft", "lr": lr, "epochs": epochs}, "tune": {"objective": objective}}
    if budget is not None:
        document["localize"] = {"strategy": "del", "budget": budget}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(document))
    return path


def script(path: Path, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(path), *map(str, args)], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})


def test_chosen_settings_names_budget_lr_and_epochs(tmp_path):
    done = script(CHOSEN_SETTINGS, tuned_file(tmp_path / "del.yaml", "oracle-free", 0.3, 0.05, 16))
    assert (done.returncode, done.stdout) == (0, "0.3@0.05@16\n")
    done = script(CHOSEN_SETTINGS, tuned_file(tmp_path / "finetune.yaml", "oracle-free", None, 1e-4, 8))
    assert (done.returncode, done.stdout) == (0, "_@0.0001@8\n")


def test_chosen_settings_refuses_a_file_tune_did_not_write(tmp_path):
    other = tmp_path / "apply.yaml"
    other.write_text("method: rft\nlr: 0.05\n")
    done = script(CHOSEN_SETTINGS, other)
    assert done.returncode == 1 and "not a file written by `unlearn tune`" in done.stderr


def results_file(path: Path, gap) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return write(path, record(gap=gap))


def test_compare_tuning_pairs_the_two_choices_by_seed(tmp_path):
    work = tmp_path / "work"
    tuned_file(work / "tuned-free" / "iid" / "del.yaml", "oracle-free", 0.3, 0.05, 16)
    tuned_file(work / "tuned-oracle" / "iid" / "del.yaml", "oracle", 0.3, 0.08, 32)
    tuned_file(work / "tuned-free" / "iid" / "finetune.yaml", "oracle-free", None, 0.01, 8)
    tuned_file(work / "tuned-oracle" / "iid" / "finetune.yaml", "oracle", None, 0.01, 8)
    # DEL: without the oracle 2.0 and 4.0, with it 1.0 and 1.0 -> differences 1.0 and 3.0: mean 2.0, margin
    # t(0.975, 1) · sd / √2 = 12.706 · 1.4142 / 1.4142 = 12.71; finetune: the same runs, difference 0
    for seed, (free, oracle) in enumerate([(2.0, 1.0), (4.0, 1.0)]):
        results_file(work / "iid" / f"s{seed}" / "del_b0.3_lr0.05_e16.json", free)
        results_file(work / "iid" / f"s{seed}" / "del_b0.3_lr0.08_e32.json", oracle)
        results_file(work / "iid" / f"s{seed}" / "finetune_lr0.01_e8.json", 5.0)
    done = script(COMPARE_TUNING, "--work", work, "--seeds", "0 1", "iid:del=del_b0.3_lr0.05_e16/del_b0.3_lr0.08_e32",
                  "iid:finetune=finetune_lr0.01_e8/finetune_lr0.01_e8")
    assert done.returncode == 0, done.stderr
    assert "| del | 0.3 / 0.05 / 16 | 0.3 / 0.08 / 32 | no | 3.00 ± 12.71 | 1.00 ± 0.00 | 2.00 ± 12.71 |" in done.stdout
    assert "| finetune | — / 0.01 / 8 | — / 0.01 / 8 | yes | 5.00 ± 0.00 | 5.00 ± 0.00 | 0.00 ± 0.00 |" in done.stdout
    assert ("equals the oracle-tuned one for 1 of 2 pipelines; over the 2 pipelines, tuning without an oracle "
            "ended on average 1.00 points of average gap further from the oracle (mean paired difference +1.00)"
            in done.stdout)


def test_compare_tuning_refuses_a_malformed_pair(tmp_path):
    done = script(COMPARE_TUNING, "--work", tmp_path, "--seeds", "0", "iid:del=only-one-run")
    assert done.returncode == 1 and "write it as SET:PIPELINE=FREE_RUN/ORACLE_RUN" in done.stderr


def search_file(path: Path, space: dict, candidates: list[tuple[dict, float, bool]], fixed: dict | None = None) -> Path:
    """A YAML as `unlearn tune` writes it, with only what regret.py reads: (settings, objective, chosen) per
    candidate, every one run to the end."""
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {"apply": {"method": "rft", "max_cost": 0.1},
                "tune": {"search_space": space, "fixed": {"strategy": "del", "budget": None, **(fixed or {})},
                         "seed": 0, "max_cost": 0.1, "search_x_retrain": 0.75,
                         "candidates": [{"settings": settings, "ran": 1, "objective": objective, "failure": None,
                                         **({"chosen": True} if chosen else {})}
                                        for settings, objective, chosen in candidates]}}
    path.write_text(yaml.safe_dump(document))
    return path


def test_regret_reruns_the_union_of_both_grids_and_tables_each_modes_regret(tmp_path):
    work = tmp_path / "work"
    free = search_file(work / "tuned-free" / "iid" / "del-c0.1.yaml", {"lr": [0.03, 0.05, 0.08, 0.128]},
                       [({"lr": 0.128}, 1.0, True), ({"lr": 0.08}, 2.0, False)], {"max_steps": 1})
    oracle = search_file(work / "tuned-oracle" / "iid" / "del-c0.1.yaml", {"lr": [0.03, 0.05, 0.08, 0.01875]},
                         [({"lr": 0.03}, 5.0, True)])
    done = script(REGRET, "args", free, oracle)
    assert done.returncode == 0, done.stderr
    assert done.stdout == ("--method rft --strategy del --param max_steps=1 --grid lr=0.03,0.05,0.08,0.128,0.01875 "
                           "--max-cost 0.1 --seed 0\n")
    # on the reported set lr 0.08 is best (3.0); the free choice (0.128) scores 3.5, the oracle's (0.03) 6.0
    rerun = search_file(work / "regret" / "iid" / "del-c0.1.yaml", {"lr": [0.03, 0.05, 0.08, 0.128, 0.01875]},
                [({"lr": 0.08}, 3.0, True), ({"lr": 0.128}, 3.5, False), ({"lr": 0.03}, 6.0, False),
                 ({"lr": 0.05}, 4.0, False), ({"lr": 0.01875}, 9.0, False)])
    assert script(REGRET, "covers", rerun, free).returncode == 0  # lr 0.128 ran to the end in the rerun
    elsewhere = search_file(tmp_path / "other.yaml", {"lr": [0.2]}, [({"lr": 0.2}, 1.0, True)])
    assert script(REGRET, "covers", rerun, elsewhere).returncode == 1
    done = script(REGRET, "table", "--work", work, "--cap", "0.1", "iid:del")
    assert done.returncode == 0, done.stderr
    assert ("| iid | del | lr 0.08 | 3.00 | lr 0.128 | 3.50 | 0.50 | 0.75 | lr 0.03 | 6.00 | 3.00 | 5 |"
            in done.stdout)
    assert "Mean regret, tuned without an oracle: 0.50 points over 1 searches (1 within 1 point)." in done.stdout
    assert "Mean regret, tuned with an oracle: 3.00 points over 1 searches (0 within 1 point)." in done.stdout


@needs_make
@pytest.mark.parametrize("target, expected", [
    # each budget of a strategy is a pipeline of its own, tuned at the curves' cap
    ("curves", ["--grid budget=0.1 --max-cost 0.1", "tuned-free/iid/del-b0.1-c0.1.yaml",
                "tuned-free/noniid/salun-b0.3-c0.1.yaml"]),
    # the conv net: its own recipe, one forget set, cap 0.1, retrain @ 0.1 beside DEL
    ("cnn", ["train --config configs/cnn/train.yaml", "tuned-free/noniid/retrain-c0.1.yaml",
             "--method retrain --grid lr=0.03,0.1,0.3 --max-cost 0.1"]),
])
def test_the_capped_targets_plan_their_searches(tmp_path, target, expected):
    dry_run = subprocess.run(["make", "-n", "-C", str(EXAMPLES / "fashion-mnist"), target, f"WORK={tmp_path}",
                              "CURVE_BUDGETS=0.1 0.3", f"UNLEARN={unlearn_command()}", f"PYTHON={sys.executable}"],
                             capture_output=True, text=True, env=clean_environment(), timeout=120)
    for text in expected:
        assert text in dry_run.stdout, text
    # a dry run cannot go on to the second phase: it refuses before the searches have written their choices
    assert dry_run.returncode != 0 and "not found: run `make tune" in dry_run.stderr, dry_run.stderr[-3000:]


@needs_make
def test_regret_reruns_each_search_on_the_reported_set_against_its_oracle(tmp_path):
    dry_run = subprocess.run(["make", "-n", "-C", str(EXAMPLES / "fashion-mnist"), "regret", f"WORK={tmp_path}",
                              f"RESULTS={tmp_path}/results", "CAPS=0.1", "PIPELINES=del retrain",
                              f"UNLEARN={unlearn_command()}", f"PYTHON={sys.executable}"],
                             capture_output=True, text=True, env=clean_environment(), timeout=120)
    assert dry_run.returncode == 0, dry_run.stderr[-3000:]
    for forget_set in ("iid", "noniid"):
        # both modes' searches first, then the grid of their joined choices on the reported set, to the end
        assert f"-o {tmp_path}/tuned-oracle/{forget_set}/del-c0.1.yaml" in dry_run.stdout
        assert (f"-f {tmp_path}/forget-{forget_set}.json --oracle {tmp_path}/{forget_set}/s0/oracle.safetensors "
                f"`{sys.executable} ../regret.py args {tmp_path}/tuned-free/{forget_set}/retrain-c0.1.yaml "
                f"{tmp_path}/tuned-oracle/{forget_set}/retrain-c0.1.yaml` --extend 0 --no-halving") in dry_run.stdout
    assert f"regret.py table --work {tmp_path} --cap 0.1" in dry_run.stdout
    assert "iid:del iid:retrain noniid:del noniid:retrain" in dry_run.stdout
