"""The README's "The pipeline" block, pasted as written into an empty folder: every line runs, DEL lands near the
oracle, and the report step writes its table and its plot."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

README = Path(__file__).resolve().parents[1] / "README.md"
MAX_GAP = 5.0  # points between DEL's test (and forget) accuracy and the oracle's


def section_blocks() -> list[str]:
    """The ```sh blocks under "## The pipeline", in order."""
    section = README.read_text().split("\n## The pipeline\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"^```sh\n(.*?)^```", section, re.S | re.M)
    assert blocks, 'README.md: no ```sh block under "## The pipeline"'
    return blocks


def pipeline_block() -> str:
    """The first ```sh block under "## The pipeline"."""
    return section_blocks()[0]


def tune_block() -> str:
    """The block under "### Choosing settings without an oracle", run in the pipeline's folder."""
    (block,) = [block for block in section_blocks() if "unlearn tune" in block]
    return block


def audit_block() -> str:
    """The block under "### Auditing forgetting over pools of models", run in the pipeline's folder."""
    (block,) = [block for block in section_blocks() if "unlearn audit" in block]
    return block


def relearn_block() -> str:
    """The block under "### Forgotten, or hidden? The relearning test", run in the pipeline's folder."""
    (block,) = [block for block in section_blocks() if "--relearn" in block]
    return block


def corrective_block() -> str:
    """The block under "### Corrective unlearning: mislabeled and poisoned data", run in an empty folder."""
    (block,) = [block for block in section_blocks() if "--manipulate" in block]
    return block


def block_environment(**extra: str) -> dict:
    """A reader's shell: the installed `unlearn` on PATH, no UNLEARN_ settings, one thread per process."""
    environment = {key: value for key, value in os.environ.items() if not key.startswith("UNLEARN_")}
    environment.update(PATH=f"{Path(sys.executable).parent}{os.pathsep}{environment.get('PATH', '')}",
                       OMP_NUM_THREADS="1", **extra)
    return environment


@pytest.fixture(scope="module")
def corrective_run(tmp_path_factory):
    """The corrective block, started in an empty folder as soon as a test asks for it, so that it runs beside the
    pipeline block: each runs one single-threaded command at a time, and together they keep two cores busy.
    Yields (the running process, its folder, the file its stderr goes to); a run still going at the end is killed."""
    folder, logs = tmp_path_factory.mktemp("corrective"), tmp_path_factory.mktemp("corrective-logs")
    with (logs / "stderr.txt").open("w") as stderr:
        process = subprocess.Popen(["bash", "-e", "-o", "pipefail", "-c", corrective_block()], cwd=folder,
                                   env=block_environment(), stdout=subprocess.DEVNULL, stderr=stderr,
                                   start_new_session=True)
    yield process, folder, logs / "stderr.txt"
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def test_the_block_is_a_whole_pipeline():
    block = pipeline_block()
    for command in ("split", "train", "localize", "apply", "evaluate", "report"):
        assert re.search(rf"^unlearn {command}\b|\| unlearn {command}\b", block, re.M), command
    assert "--strategy del" in block and "--method rft" in block and "--oracle" in block


@pytest.mark.slow
def test_the_pipeline_block_runs_as_pasted(tmp_path, corrective_run):  # the corrective block runs meanwhile
    block = pipeline_block()
    environment = block_environment(MPLBACKEND="Agg")
    # -e and pipefail: a line that fails, inside the localize | apply pipe too, fails the test
    result = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", block], cwd=tmp_path, env=environment,
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}"

    (results_file,) = re.findall(r"--json\s+(\S+)", block)
    (result_record,) = json.loads((tmp_path / results_file).read_text())["results"]
    metrics, oracle = result_record["metrics"], result_record["oracle"]["metrics"]
    assert (result_record["method"], result_record["strategy"]) == ("rft", "del")
    for metric in ("test_accuracy", "forget_accuracy"):
        assert abs(metrics[metric] - oracle[metric]) <= MAX_GAP, (metric, metrics, oracle)
    # and what it cost, as the README says: rft's 20 epochs against the original's 30, above half a retrain
    assert 0.6 < result_record["cost"]["x_retrain"] < 0.75, result_record["cost"]
    assert "warning: rft cost 0.6" in result.stderr

    # report: the Markdown table on stdout (DEL's row and the oracle's) and the budget plot
    assert re.search(r"^\| noniid\S* \| del \| rft \| 0\.3 \| 1 \|", result.stdout, re.M), result.stdout
    assert re.search(r"^\| noniid\S* \| — \| oracle \|", result.stdout, re.M), result.stdout
    (plot,) = re.findall(r"--plot\s+(\S+)", block)
    assert (tmp_path / plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # the next block: tune in the same folder, and its choice applied
    tuned = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", tune_block()], cwd=tmp_path, env=environment,
                           capture_output=True, text=True, timeout=900)
    assert tuned.returncode == 0, f"exit {tuned.returncode}\n{tuned.stderr[-6000:]}"
    best = yaml.safe_load((tmp_path / "best.yaml").read_text())
    assert best["localize"]["strategy"] == "del" and best["apply"]["method"] == "rft"
    extended = sum(len(values) for values in best["tune"]["extended"].values())
    assert len(best["tune"]["candidates"]) == 8 + extended and (tmp_path / "tuned.safetensors").exists()

    # the audit block: pools of 16 in the same folder, audited; the scale runs from the originals (distinguishable
    # from retraining on the forget set) to the retrained pool's halves (near chance)
    audited = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", audit_block()], cwd=tmp_path, env=environment,
                             capture_output=True, text=True, timeout=900)
    assert audited.returncode == 0, f"exit {audited.returncode}\n{audited.stderr[-6000:]}"
    assert "ε is resolved only" not in audited.stderr  # 16 models a pool: no coarse-scale warning
    rows = {row["name"]: row for row in json.loads((tmp_path / "audit.json").read_text())["rows"]}
    assert rows["unlearned vs retrained"]["models"] == [16, 16]
    assert rows["original vs retrained"]["attack_accuracy"] > 0.85
    assert rows["retrained ½ vs ½"]["attack_accuracy"] < 0.65

    # the relearning block: DEL and the original relearned beside the oracle, both curves and the gap per rate
    relearned = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", relearn_block()], cwd=tmp_path, env=environment,
                               capture_output=True, text=True, timeout=900)
    assert relearned.returncode == 0, f"exit {relearned.returncode}\n{relearned.stderr[-6000:]}"
    records = json.loads((tmp_path / "relearn.json").read_text())["results"]
    assert [record["method"] for record in records] == ["rft", "original"]
    for record in records:
        curves = record["relearn"]["curves"]
        assert [curve["lr"] for curve in curves] == [0.01, 0.1]
        for curve in curves:
            assert len(curve["accuracy"]) == len(curve["oracle_accuracy"]) == 11
            assert curve["gap"] == pytest.approx(sum(a - b for a, b in zip(curve["accuracy"][1:],
                                                                            curve["oracle_accuracy"][1:])) / 10)


@pytest.mark.slow
def test_the_corrective_block_runs_as_pasted(corrective_run):
    process, folder, stderr = corrective_run
    returncode = process.wait(timeout=900)
    errors = stderr.read_text()
    assert returncode == 0, f"exit {returncode}\n{errors[-6000:]}"
    rows = {}
    for known in ("poison", "poison-half"):
        original, unlearned = json.loads((folder / f"corrective-{known}.json").read_text())["results"]
        rows[known] = unlearned["metrics"]["attack_success_rate"]
        assert original["metrics"]["attack_success_rate"] > 90  # the backdoor is learned
        assert original["oracle"]["metrics"]["attack_success_rate"] < 10  # and the clean oracle has none
    # what the README says: knowing every poisoned example DEL removes the backdoor, knowing half it does not
    assert rows["poison"] < 10 and rows["poison-half"] > 50, rows
    assert re.search(r"poison \(known 0\.5\):\S+ │ del \+ rft", errors), errors[-3000:]
