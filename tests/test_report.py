"""`unlearn report`: results schema, grouping over seeds, t-margins, renderings, the plot and bad files."""

import csv
import io
import json
import sys

import pytest

from conftest import run_cli
from unlearn_cli.errors import UserError
from unlearn_cli.evaluate.aggregate import group_runs, summarize
from unlearn_cli.evaluate.metrics import metric_keys, oracle_gaps
from unlearn_cli.evaluate.results import result_record, results_document, validate_results

FORGET = {"source": "forget.json", "sha256": "f" * 64, "kind": "noniid", "size": 72}
ORACLE_METRICS = {key: 50.0 for key in metric_keys()}


def record(method="rft", strategy="del", budget=0.3, seed=0, forget_accuracy=90.0, model_sha=None, oracle_sha="0" * 64):
    metrics = {key: 40.0 for key in metric_keys()}
    metrics["forget_accuracy"] = forget_accuracy
    oracle = {"source": "oracle.safetensors", "sha256": oracle_sha, "seed": 0, "excluded_sha256": FORGET["sha256"],
              "matches_forget_set": True, "metrics": ORACLE_METRICS}
    return result_record(
        model={"source": f"{method}-{budget}-{seed}.safetensors", "sha256": model_sha or f"{method}{strategy}{budget}{seed}",
               "arch": "mlp", "dataset": "digits", "num_classes": 10},
        method=method, strategy=strategy, budget=budget, seed=seed, forget=FORGET, metrics=metrics, oracle=oracle,
        comparison=oracle_gaps(metrics, ORACLE_METRICS), allow_mismatch=False, parent=None, fraction_changed=0.25,
        wall_time_s=2.0, mask_sha256=None, mia={"members": 10, "nonmembers": 10, "forget": 5, "seed": 0})


def write(path, *records):
    path.write_text(json.dumps(results_document(list(records))))
    return path


# --- aggregation ------------------------------------------------------------------------------------

def test_t_margin_by_hand():
    # values 1, 2, 3: mean 2, s = 1, t_{0.975, 2} = 4.3026527 -> margin 4.3026527 · 1 / √3 = 2.4841377
    summary = summarize([1.0, 2.0, 3.0])
    assert summary.mean == 2.0 and summary.n == 3
    assert summary.margin == pytest.approx(2.4841377, abs=1e-6)
    # two values 10, 12: s = √2, t_{0.975, 1} = 12.7062047 -> 12.7062047 · √2 / √2 = 12.7062047
    assert summarize([10.0, 12.0]).margin == pytest.approx(12.7062047, abs=1e-6)
    assert summarize([7.0]) == type(summary)(7.0, 0.0, 1)


def test_groups_by_strategy_method_budget_and_forget_set():
    runs = [record(seed=seed, forget_accuracy=value) for seed, value in ((0, 1.0), (1, 2.0), (2, 3.0))]
    runs += [record(budget=0.1, seed=0), record(strategy="salun", seed=0), record(method="finetune", strategy=None, budget=None)]
    runs.append(record(seed=0, forget_accuracy=1.0))  # the same checkpoint evaluated again: counted once
    groups = group_runs(runs)
    assert len(groups) == 4
    main = next(g for g in groups if g.key.strategy == "del" and g.key.budget == 0.3)
    assert main.count == 3 and main.stats["forget_accuracy"].mean == 2.0
    assert main.stats["forget_accuracy"].margin == pytest.approx(2.4841377, abs=1e-6)
    assert main.stats["fraction_changed"].mean == 0.25 and main.stats["fraction_changed"].margin == 0


# --- schema -----------------------------------------------------------------------------------------

def test_schema_round_trip_and_field_errors():
    document = json.loads(json.dumps(results_document([record()])))
    assert validate_results(document, "r.json")[0]["budget"] == 0.3
    broken = json.loads(json.dumps(document))
    del broken["results"][0]["metrics"]["mia_prob"]
    with pytest.raises(UserError, match=r"r.json: results\[0\].metrics.mia_prob is missing"):
        validate_results(broken, "r.json")
    broken = json.loads(json.dumps(document))
    broken["results"][0]["budget"] = "high"
    with pytest.raises(UserError, match=r"results\[0\].budget must be a number or null"):
        validate_results(broken, "r.json")
    with pytest.raises(UserError, match="results format 'unlearn-results/2' is not readable"):
        validate_results({**document, "format": "unlearn-results/2"}, "r.json")


def test_non_finite_numbers_are_written_as_null():
    assert record(forget_accuracy=float("nan"))["metrics"]["forget_accuracy"] is None


# --- the command ------------------------------------------------------------------------------------

def test_csv_has_mean_and_margin_per_group(tmp_path):
    first = write(tmp_path / "a.json", record(seed=0, forget_accuracy=1.0), record(seed=1, forget_accuracy=2.0))
    second = write(tmp_path / "b.json", record(seed=2, forget_accuracy=3.0), record(method="finetune", strategy=None, budget=None))
    result = run_cli("report", first, second, "--format", "csv")
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    by_method = {row["method"]: row for row in rows}
    assert set(by_method) == {"rft", "finetune", "oracle"}
    rft = by_method["rft"]
    assert rft["n"] == "3" and rft["strategy"] == "del" and rft["budget"] == "0.3" and rft["forget_kind"] == "noniid"
    assert float(rft["forget_accuracy_mean"]) == 2.0
    assert float(rft["forget_accuracy_margin"]) == pytest.approx(2.48414, abs=1e-4)
    assert by_method["finetune"]["forget_accuracy_margin"] == ""  # one run: no margin (the table shows —), not 0
    assert float(by_method["oracle"]["test_accuracy_mean"]) == 50.0
    assert float(rft["average_gap_mean"]) == pytest.approx((48.0 + 10.0 + 10.0) / 3)  # |2 − 50|, |40 − 50|, |40 − 50|


def test_markdown_and_table(tmp_path):
    path = write(tmp_path / "a.json", record(seed=0), record(seed=1, forget_accuracy=80.0))
    result = run_cli("report", path, "--format", "markdown")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0].startswith("| forget set | strategy | method | budget | n | forget acc")
    assert any("| del | rft | 0.3 | 2 | 85.00 ± 63.53 |" in line for line in lines)  # 12.7062 · √50 / √2 = 63.53
    assert any("| oracle |" in line and "50.00 ± —" in line for line in lines)  # one oracle: no margin
    out = tmp_path / "table.txt"
    result = run_cli("report", path, "-o", out)
    assert result.exit_code == 0 and "mean ± 95% margin" in out.read_text()
    result = run_cli("report", path)
    assert result.exit_code == 0 and "mean ± 95% margin" in result.stderr and "rft" in result.stderr
    assert result.stdout == ""  # the table is for humans: stderr


def test_plot_writes_a_png(tmp_path):
    pytest.importorskip("matplotlib")
    path = write(tmp_path / "a.json", *[record(budget=b, seed=s) for b in (0.1, 0.3) for s in (0, 1)],
                 *[record(strategy="salun", budget=b) for b in (0.1, 0.3)])
    result = run_cli("report", path, "--plot", tmp_path / "curves.png")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_without_budgets_is_refused(tmp_path):
    pytest.importorskip("matplotlib")
    path = write(tmp_path / "a.json", record(method="finetune", strategy=None, budget=None))
    result = run_cli("report", path, "--plot", tmp_path / "curves.png")
    assert result.exit_code == 1 and "no result has one" in result.stderr
    assert not (tmp_path / "curves.png").exists()


def test_plot_without_matplotlib_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes `import matplotlib` raise ImportError
    path = write(tmp_path / "a.json", record())
    result = run_cli("report", path, "--plot", tmp_path / "curves.png")
    assert result.exit_code == 1
    assert "pip install -e '.[plot]'" in result.stderr and len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("content, message", [
    (None, "results file not found; check the path"),
    ("{not json", "malformed results JSON"),
    ('{"format": "unlearn-forget/1", "indices": [1]}', "not an unlearn results file (format 'unlearn-forget/1'"),
    ('{"format": "unlearn-results/1", "results": []}', "'results' must be a non-empty list"),
    ('{"format": "unlearn-results/1", "results": [{"model": {}}]}', "results[0].model.sha256 is missing"),
])
def test_bad_results_files_are_one_line_errors(tmp_path, content, message):
    path = tmp_path / "r.json"
    if content is not None:
        path.write_text(content)
    result = run_cli("report", write(tmp_path / "good.json", record()), path)
    assert result.exit_code == 1
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_evaluate_then_report(tiny_run, tmp_path):
    results = tmp_path / "r.json"
    result = run_cli("evaluate", tiny_run["original"], "--forget", tiny_run["forget"], "--oracle", tiny_run["oracle"],
                     "--json", results, "-q")
    assert result.exit_code == 0, result.output
    result = run_cli("report", results, "--format", "csv")
    assert result.exit_code == 0, result.output
    rows = {row["method"]: row for row in csv.DictReader(io.StringIO(result.stdout))}
    evaluated = json.loads(results.read_text())["results"][0]
    assert set(rows) == {"original", "oracle"}
    assert float(rows["original"]["average_gap_mean"]) == pytest.approx(evaluated["average_gap"], rel=1e-5)
