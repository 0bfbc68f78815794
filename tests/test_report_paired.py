"""`unlearn report --baseline`: runs paired on (forget set, seed), the t-margin of the differences, the
verdicts, the pipeline syntax and its errors; and the ToW score (Zhao et al. 2024) on hand computations."""

import csv
import io
import json
import math

import pytest

from conftest import run_cli
from unlearn_cli.errors import UserError
from unlearn_cli.evaluate.aggregate import (
    Pipeline,
    Summary,
    find_pipeline,
    group_runs,
    paired_comparisons,
    pipelines,
    run_values,
    tug_of_war,
    verdict,
)
from unlearn_cli.evaluate.metrics import metric_keys
from unlearn_cli.evaluate.results import result_record, results_document

FORGET = {"source": "forget.json", "sha256": "f" * 64, "kind": "noniid", "size": 72}
OTHER_FORGET = {"source": "other.json", "sha256": "e" * 64, "kind": "iid", "size": 72}
ORACLE_METRICS = {key: 50.0 for key in metric_keys()}
T_975_2 = 4.302652729749464  # t_{0.975, 2}
DEL_RFT = Pipeline("del", "rft", 0.3)


def record(method="rft", strategy="del", budget=0.3, seed=0, gap=1.0, strong_gap=None, forget=FORGET, oracle=True,
           accuracies=(50.0, 50.0, 50.0)):
    """A RESULT whose average gap is `gap` and strong average gap `strong_gap` (default: the same)."""
    metrics = {key: 50.0 for key in metric_keys()}
    metrics.update(zip(("forget_accuracy", "retain_accuracy", "test_accuracy"), accuracies))
    oracle_block = {"source": "oracle.safetensors", "sha256": "0" * 64, "seed": 0, "excluded_sha256": forget["sha256"],
                    "matches_forget_set": True, "metrics": ORACLE_METRICS, "metrics_from": None} if oracle else None
    comparison = {"gaps": {key: 0.0 for key in metric_keys()}, "average_gap": gap,
                  "strong_average_gap": gap if strong_gap is None else strong_gap} if oracle else None
    return result_record(
        model={"source": f"{strategy}-{method}-{budget}-{seed}.safetensors",
               "sha256": f"{strategy}{method}{budget}{seed}{forget['sha256'][:4]}",
               "arch": "mlp", "dataset": "digits", "num_classes": 10},
        method=method, strategy=strategy, budget=budget, seed=seed, forget=forget, metrics=metrics, oracle=oracle_block,
        comparison=comparison, allow_mismatch=False, parent=None, fraction_changed=None, wall_time_s=1.0,
        mask_sha256=None, mia={"members": 10, "nonmembers": 10, "forget": 5, "seed": 0})


def runs_of(strategy, gaps, method="rft", budget=0.3, seeds=None, **options):
    return [record(method=method, strategy=strategy, budget=budget, seed=seed, gap=gap, **options)
            for seed, gap in zip(range(len(gaps)) if seeds is None else seeds, gaps)]


def write(path, *records):
    path.write_text(json.dumps(results_document(list(records))))
    return path


def compare(runs, baseline=DEL_RFT):
    return {row.pipeline.label: row for row in paired_comparisons(group_runs(runs), baseline)}


# --- the paired differences -----------------------------------------------------------------------------------

def test_paired_differences_by_hand_include_zero_level():
    # baseline 1, 2, 3; salun 2, 2.5, 4.5 -> differences 1, 0.5, 1.5: mean 1, s = 0.5, margin 4.302653 · 0.5 / √3
    rows = compare(runs_of("del", [1.0, 2.0, 3.0]) + runs_of("salun", [2.0, 2.5, 4.5]))
    assert set(rows) == {"salun + rft @ 0.3"}  # the baseline is not compared with itself
    row = rows["salun + rft @ 0.3"]
    assert (row.pairs, row.unpaired_pipeline, row.unpaired_baseline) == (3, 0, 0)
    difference = row.differences["average_gap"]
    assert difference.n == 3 and difference.mean == pytest.approx(1.0)
    assert difference.margin == pytest.approx(T_975_2 * 0.5 / math.sqrt(3)) == pytest.approx(1.2421, abs=1e-4)
    assert row.verdicts["average_gap"] == "level"  # 1.0 ± 1.24 includes 0
    # the independent margins of the two groups would be far wider: pairing is what narrows it
    groups = {group.key.strategy: group for group in group_runs(runs_of("del", [1.0, 2.0, 3.0]))}
    assert groups["del"].stats["average_gap"].margin == pytest.approx(T_975_2 / math.sqrt(3))


def test_a_margin_that_excludes_zero_is_a_verdict():
    baseline = runs_of("del", [1.0, 2.0, 3.0])
    worse = runs_of("salun", [2.0, 3.1, 3.9])  # differences 1.0, 1.1, 0.9: 1.0 ± 0.248 -> the baseline is better
    better = runs_of("random", [0.5, 1.4, 2.6], strong_gap=5.0)  # −0.5, −0.6, −0.4 -> the baseline is worse
    rows = compare(baseline + worse + better)
    salun, random = rows["salun + rft @ 0.3"], rows["random + rft @ 0.3"]
    assert salun.differences["average_gap"].mean == pytest.approx(1.0)
    assert salun.differences["average_gap"].margin == pytest.approx(T_975_2 * 0.1 / math.sqrt(3))
    assert salun.verdicts["average_gap"] == salun.verdicts["strong_average_gap"] == "baseline better"
    assert random.differences["average_gap"].mean == pytest.approx(-0.5)
    assert random.verdicts["average_gap"] == "baseline worse"
    # strong gap 5 against 1, 2, 3: differences 4, 3, 2 -> 3 ± 2.48 excludes 0: worse than the baseline
    assert random.differences["strong_average_gap"].mean == pytest.approx(3.0)
    assert random.verdicts["strong_average_gap"] == "baseline better"


def test_tow_difference_is_higher_is_better():
    baseline = [record(seed=seed, accuracies=(60.0 + seed, 50.0, 50.0)) for seed in range(3)]  # ToW 0.9, 0.89, 0.88
    closer = [record(strategy="salun", seed=seed, accuracies=(55.0 + seed, 50.0, 50.0)) for seed in range(3)]
    row = compare(baseline + closer)["salun + rft @ 0.3"]
    assert row.differences["tow"].mean == pytest.approx(0.05)  # 0.95 − 0.90 on every seed: margin 0
    assert row.differences["tow"].margin == pytest.approx(0.0, abs=1e-12)
    assert row.verdicts["tow"] == "baseline worse"  # the pipeline's ToW is higher: it is closer to the oracle


def test_missing_pairs_are_left_out_and_counted():
    baseline = runs_of("del", [1.0, 2.0, 3.0, 9.0], seeds=[0, 1, 2, 7])  # seed 7: no salun run
    other = runs_of("salun", [2.0, 2.5, 4.5, 100.0], seeds=[0, 1, 2, 5])  # seed 5: no baseline run
    other.append(record(strategy="salun", seed=None, gap=50.0))  # no seed: cannot be paired
    row = compare(baseline + other)["salun + rft @ 0.3"]
    assert (row.pairs, row.unpaired_pipeline, row.unpaired_baseline, row.left_out) == (3, 2, 1, 3)
    assert row.differences["average_gap"].mean == pytest.approx(1.0)  # the same three pairs as by hand
    assert row.differences["average_gap"].n == 3


def test_pairs_are_made_within_a_forget_set():
    baseline = runs_of("del", [1.0, 2.0])  # on FORGET only
    other = runs_of("salun", [2.0, 3.0]) + runs_of("salun", [7.0, 8.0], forget=OTHER_FORGET)
    rows = paired_comparisons(group_runs(baseline + other), DEL_RFT)
    by_forget = {row.forget_sha256: row for row in rows}
    assert by_forget[FORGET["sha256"]].pairs == 2
    assert by_forget[FORGET["sha256"]].differences["average_gap"].mean == pytest.approx(1.0)
    assert by_forget[OTHER_FORGET["sha256"]].pairs == 0  # no baseline run on that forget set
    assert by_forget[OTHER_FORGET["sha256"]].unpaired_pipeline == 2
    assert by_forget[OTHER_FORGET["sha256"]].verdicts["average_gap"] == "—"


def test_runs_without_an_oracle_have_no_gap_to_pair():
    baseline = runs_of("del", [1.0, 2.0, 3.0])
    other = runs_of("salun", [2.0, 2.5]) + [record(strategy="salun", seed=2, oracle=False)]
    row = compare(baseline + other)["salun + rft @ 0.3"]
    assert row.pairs == 3 and row.differences["average_gap"].n == 2
    assert row.differences["tow"].n == 2


def test_verdict_needs_two_pairs():
    assert verdict(Summary(5.0, 0.0, 1), higher_is_better=False) == "—"
    assert verdict(Summary(float("nan"), float("nan"), 0), higher_is_better=False) == "—"
    assert verdict(Summary(1.0, 1.0, 3), higher_is_better=False) == "level"  # the interval touches 0
    assert verdict(Summary(1.0, 0.5, 3), higher_is_better=True) == "baseline worse"
    assert verdict(Summary(-1.0, 0.5, 3), higher_is_better=True) == "baseline better"


def test_two_runs_with_one_seed_cannot_be_paired():
    runs = runs_of("del", [1.0, 2.0]) + runs_of("salun", [2.0, 3.0])
    runs.append(record(strategy="salun", seed=0, gap=4.0, method="rft", budget=0.3) | {"model": {
        **runs[-1]["model"], "sha256": "another"}})
    with pytest.raises(UserError, match="salun \\+ rft @ 0.3 has two runs with seed 0"):
        paired_comparisons(group_runs(runs), DEL_RFT)


# --- naming the baseline ----------------------------------------------------------------------------------------

KNOWN = [Pipeline("del", "rft", 0.3), Pipeline("del", "rft", 0.1), Pipeline("salun", "rft", 0.3),
         Pipeline("—", "finetune", None), Pipeline("—", "rft", None), Pipeline("random", "ga", 0.5)]


@pytest.mark.parametrize("text, expected", [
    ("del + rft @ 0.3", Pipeline("del", "rft", 0.3)),
    ("del+rft@0.3", Pipeline("del", "rft", 0.3)),
    ("  del +rft@ 0.30 ", Pipeline("del", "rft", 0.3)),
    ("salun + rft", Pipeline("salun", "rft", 0.3)),  # a part left out matches any value
    ("finetune", Pipeline("—", "finetune", None)),
    ("rft", Pipeline("—", "rft", None)),  # several match: the one without a strategy and budget
    ("ga", Pipeline("random", "ga", 0.5)),
    ("ga @ 0.5", Pipeline("random", "ga", 0.5)),
])
def test_find_pipeline(text, expected):
    assert find_pipeline(text, KNOWN) == expected
    assert find_pipeline(expected.label, KNOWN) == expected  # every label names its pipeline


@pytest.mark.parametrize("text, message", [
    ("sgd", "baseline 'sgd': no such pipeline in the report; pipelines: del + rft @ 0.1, del + rft @ 0.3, "
            "random + ga @ 0.5, salun + rft @ 0.3, finetune, rft"),
    ("del + rft @ 0.2", "no such pipeline"),
    ("del + rft", "baseline 'del + rft' is ambiguous: it matches del + rft @ 0.1, del + rft @ 0.3"),
    ("rft @ 0.3", "is ambiguous: it matches del + rft @ 0.3, salun + rft @ 0.3"),
    ("del + rft @ high", "the budget after '@' must be a number"),
    ("+ rft", "write it as [STRATEGY +] METHOD [@ BUDGET]"),
    ("", "write it as"),
])
def test_find_pipeline_errors(text, message):
    with pytest.raises(UserError) as raised:
        find_pipeline(text, KNOWN)
    assert message in str(raised.value) and "\n" not in str(raised.value)


def test_pipelines_are_those_of_the_groups():
    runs = runs_of("del", [1.0]) + runs_of("salun", [1.0], forget=OTHER_FORGET) + runs_of("del", [1.0], forget=OTHER_FORGET)
    assert [pipeline.label for pipeline in pipelines(group_runs(runs))] == ["del + rft @ 0.3", "salun + rft @ 0.3"]


# --- ToW ---------------------------------------------------------------------------------------------------------

def test_tow_by_hand():
    # forget 90 vs 80, retain 99 vs 100, test 85 vs 86 -> 0.9 · 0.99 · 0.99 = 0.88209
    metrics = {"forget_accuracy": 90.0, "retain_accuracy": 99.0, "test_accuracy": 85.0}
    oracle = {"forget_accuracy": 80.0, "retain_accuracy": 100.0, "test_accuracy": 86.0}
    assert tug_of_war(metrics, oracle) == pytest.approx(0.88209, abs=1e-12)
    assert tug_of_war(oracle, oracle) == 1.0
    assert tug_of_war(metrics, None) is None
    assert tug_of_war({**metrics, "test_accuracy": None}, oracle) is None


def test_tow_is_aggregated_per_group():
    runs = [record(seed=0, accuracies=(60.0, 50.0, 50.0)), record(seed=1, accuracies=(50.0, 48.0, 51.0)),
            record(seed=2, oracle=False)]
    assert run_values(runs[0])["tow"] == pytest.approx(0.9)
    assert run_values(runs[1])["tow"] == pytest.approx(0.98 * 0.99)
    assert run_values(runs[2])["tow"] is None  # no oracle: no ToW
    stats = group_runs(runs)[0].stats["tow"]
    assert stats.n == 2 and stats.mean == pytest.approx((0.9 + 0.9702) / 2)


# --- the command -------------------------------------------------------------------------------------------------

def results_file(tmp_path):
    return write(tmp_path / "r.json", *runs_of("del", [1.0, 2.0, 3.0]), *runs_of("salun", [2.0, 2.5, 4.5]),
                 *runs_of("random", [2.0, 3.1, 3.9, 8.0]), *runs_of(None, [0.5], method="finetune", budget=None))


def test_cli_table_has_the_paired_table(tmp_path):
    path = results_file(tmp_path)
    result = run_cli("report", path, "--baseline", "del+rft@0.3")
    assert result.exit_code == 0, result.output
    assert "mean ± 95% margin over seeds" in result.stderr and "ToW" in result.stderr
    assert "paired against baseline del + rft @ 0.3" in result.stderr
    lines = result.stderr.splitlines()
    lines = lines[lines.index(next(line for line in lines if "paired against baseline" in line)):]  # the second table
    salun = next(line for line in lines if "salun + rft @ 0.3" in line)
    assert "+1.00 ± 1.24" in salun and "level" in salun
    random = next(line for line in lines if "random + rft @ 0.3" in line)
    assert "+1.00 ± 0.25" in random and "baseline better" in random and "│ 3 │ 1 " in random  # n 3, 1 left out
    finetune = next(line for line in lines if "│ finetune " in line)
    assert "│ 1 │ 2 " in finetune and "-0.50 ± —" in finetune  # one pair (baseline seeds 1, 2 left out): no margin
    out = tmp_path / "table.txt"
    assert run_cli("report", path, "--baseline", "del + rft @ 0.3", "-q", "-o", out).exit_code == 0
    assert "paired against baseline del + rft @ 0.3" in out.read_text()


def test_cli_markdown_has_a_second_table(tmp_path):
    result = run_cli("report", results_file(tmp_path), "--baseline", "del + rft @ 0.3", "--format", "markdown")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith("| forget set | strategy | method | budget | n | forget acc")
    assert lines[0].endswith("| ToW | wall ×oracle | cost ×retrain |")
    header = lines.index(next(line for line in lines if line.startswith("| forget set | pipeline |")))
    assert lines[header] == ("| forget set | pipeline | n | left out | Δ avg gap | avg gap: baseline | Δ strong gap | "
                             "strong gap: baseline | Δ ToW | ToW: baseline |")
    assert "| noniid:ffffffff | salun + rft @ 0.3 | 3 | 0 | +1.00 ± 1.24 | level |" in result.stdout
    assert any(line.startswith("Paired against baseline `del + rft @ 0.3`") for line in lines)


def test_cli_csv_keeps_its_columns_and_adds_paired_rows(tmp_path):
    path = results_file(tmp_path)
    plain = run_cli("report", path, "--format", "csv")
    paired = run_cli("report", path, "--format", "csv", "--baseline", "del+rft@0.3")
    assert plain.exit_code == 0 and paired.exit_code == 0, paired.output
    plain_rows, paired_rows = list(csv.reader(io.StringIO(plain.stdout))), list(csv.reader(io.StringIO(paired.stdout)))
    header = plain_rows[0]
    assert header[:6] == ["forget_kind", "forget_sha256", "strategy", "method", "budget", "n"]
    assert header[-7:] == ["tow_mean", "tow_margin", "wall_x_oracle_mean", "wall_x_oracle_margin",  # appended:
                           "cost_x_retrain_mean", "cost_x_retrain_margin", "cap"]  # earlier columns keep their place
    assert paired_rows[0][:len(header)] == header and paired_rows[0][len(header)] == "comparison"
    assert [row[:len(header)] for row in paired_rows[1:len(plain_rows)]] == plain_rows[1:]
    rows = [row for row in csv.DictReader(io.StringIO(paired.stdout)) if row["comparison"] == "paired"]
    by_strategy = {row["strategy"]: row for row in rows}
    assert set(by_strategy) == {"salun", "random", "—"}
    salun = by_strategy["salun"]
    assert (salun["method"], salun["budget"], salun["n"]) == ("rft", "0.3", "3")
    assert (salun["baseline_strategy"], salun["baseline_method"], salun["baseline_budget"]) == ("del", "rft", "0.3")
    assert float(salun["average_gap_diff_mean"]) == pytest.approx(1.0)
    assert float(salun["average_gap_diff_margin"]) == pytest.approx(1.2421, abs=1e-4)
    assert salun["average_gap_diff_verdict"] == "level" and salun["forget_accuracy_mean"] == ""
    assert by_strategy["random"]["unpaired_pipeline"] == "1" and by_strategy["random"]["average_gap_diff_verdict"] == "baseline better"
    assert by_strategy["—"]["average_gap_diff_verdict"] == ""  # one pair: no interval


def test_cli_unknown_or_ambiguous_baseline_is_one_line(tmp_path):
    path = results_file(tmp_path)
    result = run_cli("report", path, "--baseline", "sgd")
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0] == ("error: baseline 'sgd': no such pipeline in the report; pipelines: "
                                            "del + rft @ 0.3, random + rft @ 0.3, salun + rft @ 0.3, finetune")
    result = run_cli("report", path, "--baseline", "rft", "--format", "csv")
    assert result.exit_code == 1 and result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1 and "'rft' is ambiguous" in result.stderr


def test_baseline_from_the_config_and_the_flag_overrides(tmp_path):
    path = results_file(tmp_path)
    config = tmp_path / "report.yaml"
    config.write_text("format: csv\nbaseline: salun + rft @ 0.3\n")
    result = run_cli("report", path, "--config", config)
    assert result.exit_code == 0, result.output
    rows = [row for row in csv.DictReader(io.StringIO(result.stdout)) if row["comparison"] == "paired"]
    assert {row["baseline_strategy"] for row in rows} == {"salun"} and len(rows) == 3
    result = run_cli("report", path, "--config", config, "--baseline", "del+rft@0.3")
    rows = [row for row in csv.DictReader(io.StringIO(result.stdout)) if row["comparison"] == "paired"]
    assert {row["baseline_strategy"] for row in rows} == {"del"}
    config.write_text("baseline: 3\n")
    result = run_cli("report", path, "--config", config)
    assert result.exit_code == 1 and "'baseline'" in result.stderr and str(config) in result.stderr


def test_cost_is_the_wall_time_as_a_fraction_of_the_oracles():
    from unlearn_cli.evaluate.aggregate import cost_fraction, run_values

    assert cost_fraction(10.0, 40.0) == 0.25
    assert cost_fraction(None, 40.0) is None and cost_fraction(10.0, None) is None and cost_fraction(1.0, 0.0) is None
    run = {"metrics": {}, "wall_time_s": 6.0, "oracle": {"metrics": {}, "wall_time_s": 24.0}}
    assert run_values(run)["wall_x_oracle"] == 0.25
    assert run_values({**run, "oracle": None})["wall_x_oracle"] is None
