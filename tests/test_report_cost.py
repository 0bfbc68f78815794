"""`unlearn report` and cost: the `cost ×retrain` column (unknown, never 0, for results without a cost), pipelines
at a work cap as pipelines of their own (`retrain @ 0.1`), the `cost` field of the results schema."""

import csv
import io
import json

import pytest

from conftest import run_cli
from unlearn_cli.errors import UserError
from unlearn_cli.evaluate.aggregate import (
    Pipeline,
    find_pipeline,
    group_runs,
    pipeline_of,
    pipelines,
    run_values,
)
from unlearn_cli.evaluate.metrics import metric_keys
from unlearn_cli.evaluate.results import result_record, results_document, validate_results

FORGET = {"source": "forget.json", "sha256": "f" * 64, "kind": "noniid", "size": 72}
ORACLE_METRICS = {key: 50.0 for key in metric_keys()}


def cost_block(x_retrain, cap=None, retrain_work=3000.0):
    work = None if x_retrain is None else x_retrain * retrain_work
    return {"work": work, "unlearn_work": work, "localize_work": None, "retrain_work": retrain_work,
            "x_retrain": x_retrain, "cap": cap}


def record(method="rft", strategy=None, budget=None, seed=0, x_retrain=0.2, cap=None, accuracies=(50.0, 50.0, 50.0),
           mia=50.0, gap=None, cost=True):
    """A RESULT of `method` whose forget, retain, test accuracies and MIA-correctness are given; the oracle's are
    all 50, so the average gap is the mean |difference| of forget, test and MIA-correctness unless `gap` says."""
    metrics = {key: 50.0 for key in metric_keys()}
    metrics.update(zip(("forget_accuracy", "retain_accuracy", "test_accuracy"), accuracies))
    metrics["mia_correctness"] = mia
    gaps = {key: abs(metrics[key] - ORACLE_METRICS[key]) for key in metric_keys()}
    average = (gaps["forget_accuracy"] + gaps["test_accuracy"] + gaps["mia_correctness"]) / 3 if gap is None else gap
    oracle = {"source": "oracle.safetensors", "sha256": "0" * 64, "seed": seed, "excluded_sha256": FORGET["sha256"],
              "matches_forget_set": True, "metrics": ORACLE_METRICS, "metrics_from": None}
    run = result_record(
        model={"source": "m.safetensors", "sha256": f"{strategy}{method}{budget}{cap}{seed}", "arch": "mlp",
               "dataset": "digits", "num_classes": 10},
        method=method, strategy=strategy, budget=budget, seed=seed, forget=FORGET, metrics=metrics, oracle=oracle,
        comparison={"gaps": gaps, "average_gap": average, "strong_average_gap": average}, allow_mismatch=False,
        parent=None, fraction_changed=None, wall_time_s=1.0, mask_sha256=None,
        mia={"members": 10, "nonmembers": 10, "forget": 5, "seed": 0})
    if cost:
        run["cost"] = cost_block(x_retrain, cap)
    return run


def write(path, *records):
    path.write_text(json.dumps(results_document(list(records))))
    return path


# --- the schema --------------------------------------------------------------------------------------------------

def test_cost_is_optional_in_the_schema_and_checked_when_there():
    plain = record(cost=False)
    assert "cost" not in plain
    for run in (plain, record(), {**plain, "cost": None}):
        assert validate_results(json.loads(json.dumps(results_document([run]))), "r.json")[0] is not None
    for cost, message in ((3, r"results\[0\].cost must be an object or null, got 3"),
                          ({"work": 1.0}, r"results\[0\].cost.unlearn_work is missing"),
                          ({**cost_block(0.1), "x_retrain": "cheap"}, r"results\[0\].cost.x_retrain must be a number or null")):
        with pytest.raises(UserError, match=message):
            validate_results(results_document([{**plain, "cost": cost}]), "r.json")


# --- the cost ×retrain column -------------------------------------------------------------------------------------

def test_cost_x_retrain_is_aggregated_and_unknown_is_not_zero():
    runs = [record(seed=0, x_retrain=0.1), record(seed=1, x_retrain=0.3)]
    runs += [record(method="finetune", seed=0, cost=False), record(method="ssd", seed=0, x_retrain=None)]
    groups = {group.key.method: group for group in group_runs(runs)}
    assert groups["rft"].stats["cost_x_retrain"].mean == pytest.approx(0.2)
    assert groups["rft"].stats["cost_x_retrain"].margin == pytest.approx(12.7062047 * 0.1, abs=1e-6)  # s = √0.02
    assert run_values(runs[2])["cost_x_retrain"] is None and run_values(runs[3])["cost_x_retrain"] is None
    assert groups["finetune"].stats["cost_x_retrain"].n == 0 and groups["ssd"].stats["cost_x_retrain"].n == 0


def test_cost_columns_in_every_format(tmp_path):
    path = write(tmp_path / "r.json", record(seed=0, x_retrain=0.1), record(seed=1, x_retrain=0.3),
                 record(method="finetune", cost=False))
    rows = {row["method"]: row for row in csv.DictReader(io.StringIO(run_cli("report", path, "--format", "csv").stdout))}
    assert float(rows["rft"]["cost_x_retrain_mean"]) == pytest.approx(0.2)
    assert float(rows["rft"]["cost_x_retrain_margin"]) == pytest.approx(1.27062, abs=1e-5)
    assert rows["finetune"]["cost_x_retrain_mean"] == rows["finetune"]["cost_x_retrain_margin"] == ""  # unknown
    assert rows["rft"]["wall_x_oracle_mean"] == ""  # the oracle records no wall time here
    markdown = run_cli("report", path, "--format", "markdown").stdout.splitlines()
    assert markdown[0].endswith("| ToW | wall ×oracle | cost ×retrain |")
    assert next(line for line in markdown if "| finetune |" in line).endswith("| — | — |")
    assert next(line for line in markdown if "| rft |" in line).endswith("| — | 0.200 ± 1.271 |")
    table = run_cli("report", path, "-q", "-o", tmp_path / "t.txt")
    assert table.exit_code == 0 and "cost ×retrain" in (tmp_path / "t.txt").read_text()
    assert "wall ×oracle" in (tmp_path / "t.txt").read_text()


# --- pipelines at a cap ---------------------------------------------------------------------------------------------

def capped_runs():
    runs = [record(method="retrain", seed=seed, x_retrain=1.0) for seed in (0, 1)]  # the oracle evaluated as a model
    runs += [record(method="retrain", seed=seed, cap=cap, x_retrain=cap) for cap in (0.05, 0.1, 0.25) for seed in (0, 1)]
    runs += [record(method="rft", strategy="del", budget=0.3, seed=0, cap=0.1, x_retrain=0.1)]
    return runs


def test_each_cap_is_a_pipeline_of_its_own():
    labels = [pipeline.label for pipeline in pipelines(group_runs(capped_runs()))]
    assert labels == ["del + rft @ 0.3 @ 0.1", "retrain", "retrain @ 0.05", "retrain @ 0.1", "retrain @ 0.25"]
    groups = {pipeline_of(group.key).label: group for group in group_runs(capped_runs())}
    assert groups["retrain @ 0.1"].count == 2 and groups["retrain"].count == 2


@pytest.mark.parametrize("text, expected", [
    ("retrain @ 0.1", Pipeline("—", "retrain", None, 0.1)),
    ("retrain@0.10", Pipeline("—", "retrain", None, 0.1)),
    ("retrain", Pipeline("—", "retrain", None, None)),  # the oracle: nothing left out
    ("del + rft @ 0.3 @ 0.1", Pipeline("del", "rft", 0.3, 0.1)),
    ("del + rft @ 0.3", Pipeline("del", "rft", 0.3, 0.1)),  # the cap left out: the only del + rft @ 0.3
])
def test_find_pipeline_with_caps(text, expected):
    known = pipelines(group_runs(capped_runs()))
    assert find_pipeline(text, known) == expected
    assert find_pipeline(expected.label, known) == expected


def test_find_pipeline_cap_errors():
    known = [Pipeline("—", "retrain", None, 0.1), Pipeline("—", "retrain", None, 0.25)]
    with pytest.raises(UserError, match=r"^baseline 'retrain' is ambiguous: it matches retrain @ 0.1, retrain @ 0.25;"):
        find_pipeline("retrain", known)
    with pytest.raises(UserError, match=r"^baseline 'retrain @ 0.5': no such pipeline in the report; pipelines: "
                                        r"retrain @ 0.1, retrain @ 0.25$"):
        find_pipeline("retrain @ 0.5", known)
    with pytest.raises(UserError, match=r"write it as \[STRATEGY \+\] METHOD \[@ BUDGET\] \[@ CAP\]"):
        find_pipeline("del + rft @ 0.3 @ 0.1 @ 2", known)


def test_caps_in_the_tables_and_the_baseline(tmp_path):
    path = write(tmp_path / "r.json", *capped_runs())
    result = run_cli("report", path, "--format", "markdown", "--baseline", "retrain")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith("| forget set | strategy | method | budget | cap | n | forget acc")
    assert any(line.startswith("| noniid:ffffffff | — | retrain | — | 0.1 | 2 |") for line in lines)
    assert any(line.startswith("| noniid:ffffffff | del | rft | 0.3 | 0.1 | 1 |") for line in lines)
    assert any(line.startswith("| noniid:ffffffff | retrain @ 0.25 | 2 | 0 |") for line in lines)  # paired
    rows = list(csv.DictReader(io.StringIO(run_cli("report", path, "--format", "csv", "--baseline",
                                                   "retrain @ 0.25").stdout)))
    summary = {(row["method"], row["cap"]) for row in rows if row["comparison"] == ""}
    assert summary == {("retrain", ""), ("retrain", "0.05"), ("retrain", "0.1"), ("retrain", "0.25"), ("rft", "0.1"),
                       ("oracle", "")}
    paired = [row for row in rows if row["comparison"] == "paired"]
    assert {row["baseline_cap"] for row in paired} == {"0.25"}
    assert sorted(row["cap"] for row in paired) == ["", "0.05", "0.1", "0.1"]
