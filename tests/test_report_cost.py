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
    Summary,
    find_pipeline,
    merge_evaluations,
    group_runs,
    pipeline_of,
    pipelines,
    run_values,
)
from unlearn_cli.evaluate.metrics import metric_keys
from unlearn_cli.evaluate.pareto import PoolScore, audit_forget_scores, dominates, f_star, pareto_fronts
from unlearn_cli.evaluate.results import result_record, results_document, validate_results

FORGET = {"source": "forget.json", "sha256": "f" * 64, "kind": "noniid", "size": 72}
ORACLE_METRICS = {key: 50.0 for key in metric_keys()}


def cost_block(x_retrain, cap=None, retrain_work=3000.0):
    work = None if x_retrain is None else x_retrain * retrain_work
    return {"work": work, "unlearn_work": work, "localize_work": None, "retrain_work": retrain_work,
            "x_retrain": x_retrain, "cap": cap}


def record(method="rft", strategy=None, budget=None, seed=0, x_retrain=0.2, cap=None, accuracies=(50.0, 50.0, 50.0),
           mia=50.0, gap=None, cost=True, with_oracle=True):
    """A RESULT of `method` whose forget, retain, test accuracies and MIA-correctness are given; the oracle's are
    all 50, so the average gap is the mean |difference| of forget, test and MIA-correctness unless `gap` says."""
    metrics = {key: 50.0 for key in metric_keys()}
    metrics.update(zip(("forget_accuracy", "retain_accuracy", "test_accuracy"), accuracies))
    metrics["mia_correctness"] = mia
    gaps = {key: abs(metrics[key] - ORACLE_METRICS[key]) for key in metric_keys()}
    average = (gaps["forget_accuracy"] + gaps["test_accuracy"] + gaps["mia_correctness"]) / 3 if gap is None else gap
    oracle = {"source": "oracle.safetensors", "sha256": "0" * 64, "seed": seed, "excluded_sha256": FORGET["sha256"],
              "matches_forget_set": True, "metrics": ORACLE_METRICS, "metrics_from": None}
    if not with_oracle:
        oracle, gaps, average = None, None, None
    run = result_record(
        model={"source": "m.safetensors", "sha256": f"{strategy}{method}{budget}{cap}{seed}", "arch": "mlp",
               "dataset": "digits", "num_classes": 10},
        method=method, strategy=strategy, budget=budget, seed=seed, forget=FORGET, metrics=metrics, oracle=oracle,
        comparison={"gaps": gaps, "average_gap": average, "strong_average_gap": average} if with_oracle else None,
        allow_mismatch=False,
        parent=None, fraction_changed=None, wall_time_s=1.0, mask_sha256=None,
        mia={"members": 10, "nonmembers": 10, "forget": 5, "seed": 0})
    if cost:
        run["cost"] = cost_block(x_retrain, cap)
    else:  # as a file written before cost accounting
        run.pop("cost")
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


# --- the Pareto front -------------------------------------------------------------------------------------------------
# By hand, seeds 0, 1, 2, average gaps (lower is better) and cost ×retrain:
#   rft       cost 0.05, gaps 5, 6, 7
#   ssd       cost 0.10, gaps 1, 2, 3
#   finetune  cost 0.20, gaps 2, 3.1, 3.9: − ssd = 1.0, 1.1, 0.9 -> +1.00 ± 0.25 excludes 0, and ssd is cheaper:
#             ssd dominates finetune
#   neggrad   cost 0.30, gaps 2, 2.5, 4.5: − ssd = 1, 0.5, 1.5 -> +1.00 ± 1.24 includes 0: ssd is cheaper and better on
#             average (2 against 3) but does NOT dominate; − finetune = 0, −0.6, 0.6: no interval excludes 0 either
#   l1-sparse cost unknown (a result written before cost accounting): not placed
# rft is the cheapest, and nothing cheaper beats it: non-dominated. Front on the gap: rft, ssd, neggrad.
GAPS = {"rft": (0.05, (5.0, 6.0, 7.0)), "ssd": (0.1, (1.0, 2.0, 3.0)), "finetune": (0.2, (2.0, 3.1, 3.9)),
        "neggrad": (0.3, (2.0, 2.5, 4.5)), "l1-sparse": (None, (1.0, 1.0, 1.0))}


def front_runs():
    return [record(method=method, seed=seed, x_retrain=cost, gap=gap, cost=cost is not None)
            for method, (cost, gaps) in GAPS.items() for seed, gap in enumerate(gaps)]


def points_by_label(sets):
    (front,) = sets
    return {point.pipeline.label: point for point in front.points}


def test_pareto_marking_by_hand():
    points = points_by_label(pareto_fronts(group_runs(front_runs())))
    assert [label for label in points] == ["rft", "ssd", "finetune", "neggrad", "l1-sparse"]  # by cost, unknown last
    on_gap_front = {label for label, point in points.items() if "average_gap" in point.front}
    assert on_gap_front == {"rft", "ssd", "neggrad"}
    assert dominates(points["ssd"], points["finetune"], "average_gap")
    assert not dominates(points["ssd"], points["neggrad"], "average_gap")  # cheaper, better on average, interval has 0
    assert not dominates(points["ssd"], points["rft"], "average_gap")  # better by 4 on every seed, but costlier
    assert not points["l1-sparse"].placed and points["l1-sparse"].front == []
    assert not dominates(points["l1-sparse"], points["finetune"], "average_gap")  # unknown cost: never placed
    # every ToW is 1 (the accuracies are the oracle's): no difference excludes 0, every placed pipeline is on its front
    assert {label for label, point in points.items() if "tow" in point.front} == {"rft", "ssd", "finetune", "neggrad"}


def audit(method, score, interval=None):
    """An `unlearn-audit/1` document scoring the pool of `method`'s three models (seeds 0–2) on FORGET."""
    models = [{"source": "m", "sha256": f"None{method}NoneNone{seed}", "method": method, "strategy": None,
               "budget": None, "seed": seed} for seed in range(3)]
    pool = {"size": 3, "method": method, "strategy": None, "budget": None, "models": models,
            "accuracy": {"forget": 50.0, "retain": 50.0, "test": 50.0}}
    row = {"name": "unlearned vs retrained", "pool": "unlearned", "examples": "forget", "models": [3, 3],
           "forget_score": score, "final_score": score, "attack_accuracy": 0.5, "attack_auc": 0.5,
           "kl_gaussian": {"mean": 0.1, "p95": 0.2}, "kl_binned": {"mean": 0.1, "p95": 0.2},
           "epsilon": {"mean": 1.0, "median": 1.0, "share_at_cap": 0.0}, "resolution": 1, "buckets": [],
           "accuracy": {"first": {"forget": 50.0, "retain": 50.0, "test": 50.0},
                        "second": {"forget": 50.0, "retain": 50.0, "test": 50.0}}}
    if interval is not None:
        row["intervals"] = {"forget_score": list(interval)}
    retrained = {**pool, "method": "retrain", "models": [{**model, "sha256": f"oracle{model['seed']}"} for model in models]}
    return {"format": "unlearn-audit/1", "unlearn_version": "0", "forget": FORGET, "dataset": "digits", "arch": "mlp",
            "settings": {}, "pools": {"unlearned": pool, "retrained": retrained}, "rows": [row], "warnings": []}


# forget scores (higher is better) with intervals: rft 0.80 [0.75, 0.85] lies wholly above ssd's 0.50 [0.40, 0.60]
# and is cheaper: it dominates ssd; finetune 0.70 [0.62, 0.78] and neggrad 0.65 [0.55, 0.75] overlap rft's (0.75 is
# not above 0.75) and each other's. Without intervals the points decide: rft's 0.80 is above all three.
SCORES = {"rft": (0.8, (0.75, 0.85)), "ssd": (0.5, (0.4, 0.6)), "finetune": (0.7, (0.62, 0.78)),
          "neggrad": (0.65, (0.55, 0.75))}


@pytest.mark.parametrize("with_intervals, expected", [(True, {"rft", "finetune", "neggrad"}), (False, {"rft"})])
def test_forget_score_front_from_audits(with_intervals, expected):
    groups = group_runs(front_runs())
    documents = [audit(method, score, interval if with_intervals else None) for method, (score, interval) in SCORES.items()]
    scores = audit_forget_scores(documents, groups)
    assert scores[(FORGET["sha256"], Pipeline("—", "ssd", None))] == PoolScore(0.5, *((0.4, 0.6) if with_intervals
                                                                                       else (None, None)))
    points = points_by_label(pareto_fronts(groups, scores))
    assert {label for label, point in points.items() if "forget_score" in point.front} == expected
    assert points["l1-sparse"].forget_score is None


# --- F* ---------------------------------------------------------------------------------------------------------------
# The oracle's forget, retain, test accuracy and MIA-correctness are all 50. Per seed 0, 1, 2 (forget accuracy):
#   retrain @ 0.05: 60, 61, 62 -> differences 10, 11, 12: 11 ± 2.48 excludes 0
#   retrain @ 0.1:  49, 51, 50.5 -> −1, 1, 0.5: +0.17 ± 2.59 contains 0, and retain, test, MIA differ by 0 ± 0
#   retrain @ 0.25: 50 everywhere
# F* = 0.1 (the smallest cap that is enough, though 0.25 is too).
def retrain_at(cap, forget_accuracies, mia=(50.0, 50.0, 50.0), **options):
    return [record(method="retrain", cap=cap, x_retrain=cap, seed=seed, accuracies=(accuracy, 50.0, 50.0), mia=m, **options)
            for seed, (accuracy, m) in enumerate(zip(forget_accuracies, mia))]


def test_f_star_by_hand():
    runs = retrain_at(0.05, (60.0, 61.0, 62.0)) + retrain_at(0.1, (49.0, 51.0, 50.5)) + retrain_at(0.25, (50.0,) * 3)
    result = f_star(group_runs(runs))
    assert [check.cap for check in result.checks] == [0.05, 0.1, 0.25]
    low, middle, _ = result.checks
    assert low.differences["forget_accuracy"].mean == pytest.approx(11.0) and not low.indistinguishable
    assert middle.differences["forget_accuracy"].mean == pytest.approx(1 / 6)
    assert middle.differences["forget_accuracy"].margin == pytest.approx(2.5856, abs=1e-4)
    assert middle.differences["retain_accuracy"] == Summary(0.0, 0.0, 3) and middle.indistinguishable
    assert result.value == 0.1 and result.largest == 0.25


def test_f_star_counts_mia_correctness_and_needs_two_seeds():
    # forget accuracy equal to the oracle's, MIA-correctness 5, 5.1, 4.9 above it: 5 ± 0.25 excludes 0
    runs = retrain_at(0.1, (50.0,) * 3, mia=(55.0, 55.1, 54.9)) + retrain_at(0.2, (50.0,), mia=(50.0,))
    result = f_star(group_runs(runs))
    assert [check.indistinguishable for check in result.checks] == [False, False]  # 0.2: one seed, no interval
    assert result.value is None and result.largest == 0.2


def test_f_star_pairs_with_the_oracles_own_results_by_seed():
    # runs evaluated without --oracle: the oracle's own results (retrain, no cap) of the same seed are the partner
    oracle = [record(method="retrain", seed=seed, x_retrain=1.0, accuracies=(40.0 + seed, 50.0, 50.0), mia=50.0,
                     with_oracle=False) for seed in range(3)]
    capped = retrain_at(0.1, (40.0, 41.0, 42.0), with_oracle=False)  # equal to the oracle seed by seed
    (check,) = f_star(group_runs(oracle + capped)).checks
    assert check.differences["forget_accuracy"] == Summary(0.0, 0.0, 3) and check.indistinguishable


# --- the command ------------------------------------------------------------------------------------------------------

def pareto_file(tmp_path):
    runs = front_runs() + retrain_at(0.05, (60.0, 61.0, 62.0)) + retrain_at(0.1, (49.0, 51.0, 50.5))
    return write(tmp_path / "r.json", *runs)


def test_cli_pareto_markdown(tmp_path):
    result = run_cli("report", pareto_file(tmp_path), "--pareto", "--format", "markdown")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert "| pipeline | n | cost ×retrain | avg gap | ToW | non-dominated on |" in lines
    assert "| ssd | 3 | 0.100 ± 0.000 | 2.00 ± 2.48 | 1.000 ± 0.000 | avg gap, ToW |" in lines
    assert "| finetune | 3 | 0.200 ± 0.000 | 3.00 ± 2.37 | 1.000 ± 0.000 | ToW |" in lines  # ssd beats its gap
    assert "| l1-sparse | 3 | unknown | 1.00 ± 0.00 | 1.000 ± 0.000 | cannot be placed |" in lines
    assert "- cost unknown (results without cost accounting), so these pipelines cannot be placed: l1-sparse" in lines
    assert "- reference curve (retraining from scratch at a fraction F of the recipe): retrain @ 0.05, retrain @ 0.1" in lines
    assert "- F* = 0.1" in lines
    assert "| 0.05 | 3 | +11.00 ± 2.48 | +0.00 ± 0.00 | +0.00 ± 0.00 | +0.00 ± 0.00 | no |" in lines
    summary = next(line for line in lines if line.startswith("| noniid:ffffffff | — | l1-sparse |"))
    assert summary.endswith("| — |")  # the summary table's cost ×retrain: unknown, not 0


def test_cli_pareto_table_f_star_not_reached_and_audits_without_intervals(tmp_path):
    path = write(tmp_path / "r.json", *front_runs(), *retrain_at(0.05, (60.0, 61.0, 62.0)),
                 *retrain_at(0.25, (55.0, 55.1, 54.9)))
    audit_path = tmp_path / "audit.json"
    audit_path.write_text(json.dumps(audit("ssd", 0.5)))
    out = tmp_path / "pareto.txt"
    result = run_cli("report", path, audit_path, "--pareto", "-q", "-o", out)
    assert result.exit_code == 0, result.output
    text = out.read_text()
    assert "F* > 0.25: no cap tried was enough" in text
    assert "forget score" in text and "some audits carry no interval, so dominance is marked on non-overlapping values" in text
    pareto = text[text.index("cost against quality"):].splitlines()
    assert next(line for line in pareto if "│ ssd " in line).split("│")[6:8] == ["        0.500 ", " avg gap, ToW, forget score "]


def test_cli_pareto_without_any_cost_is_one_line_and_writes_nothing(tmp_path):
    path = write(tmp_path / "r.json", *[record(method=method, seed=seed, cost=False) for method in ("rft", "ssd")
                                        for seed in (0, 1)])
    out, png = tmp_path / "out.md", tmp_path / "p.png"
    for arguments in ((), ("--format", "markdown", "-o", out)):
        result = run_cli("report", path, "--pareto", *arguments)
        assert result.exit_code == 1 and result.stdout == ""
        assert result.stderr.strip().splitlines() == [
            "error: --pareto places pipelines by cost ×retrain, but no result has a cost (results written before cost "
            "accounting have none); evaluate checkpoints that record their work with `unlearn evaluate --json`"]
    assert not out.exists()
    pytest.importorskip("matplotlib")
    assert run_cli("report", path, "--pareto", "--plot", png).exit_code == 1 and not png.exists()


def test_cli_pareto_refuses_csv(tmp_path):
    result = run_cli("report", pareto_file(tmp_path), "--pareto", "--format", "csv")
    assert result.exit_code == 1 and result.stdout == ""
    assert result.stderr.strip() == ("error: --pareto renders as a table or Markdown (--format table|markdown), and as "
                                     "a PNG with --plot; the CSV without --pareto holds every pipeline's cost_x_retrain")


def test_cli_pareto_plot_and_config(tmp_path):
    pytest.importorskip("matplotlib")
    config = tmp_path / "report.yaml"
    config.write_text("pareto: true\nformat: markdown\n")
    result = run_cli("report", pareto_file(tmp_path), "--config", config, "--plot", tmp_path / "pareto.png")
    assert result.exit_code == 0, result.output
    assert "- F* = 0.1" in result.stdout.splitlines()
    assert (tmp_path / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_one_pair_is_no_interval_so_nothing_dominates():
    # ssd is better than finetune by 1 point on the one seed they share: no interval, no dominance
    runs = [record(method="ssd", seed=0, x_retrain=0.1, gap=1.0), record(method="finetune", seed=0, x_retrain=0.2, gap=2.0),
            record(method="finetune", seed=1, x_retrain=0.2, gap=2.0)]
    points = points_by_label(pareto_fronts(group_runs(runs)))
    assert not dominates(points["ssd"], points["finetune"], "average_gap")
    assert "average_gap" in points["finetune"].front


def test_each_forget_set_has_its_own_front_and_f_star():
    other = {**FORGET, "sha256": "e" * 64, "kind": "iid"}
    runs = front_runs() + retrain_at(0.1, (49.0, 51.0, 50.5))
    moved = [{**run, "forget": other, "model": {**run["model"], "sha256": run["model"]["sha256"] + "-iid"},
              "average_gap": 9.0 - run["average_gap"] if run["method"] == "ssd" else run["average_gap"]}
             for run in front_runs() + retrain_at(0.1, (60.0, 61.0, 62.0))]
    first, second = pareto_fronts(group_runs(runs + moved))  # iid sorts first
    assert (first.forget_kind, second.forget_kind) == ("iid", "noniid")
    assert first.f_star.value is None and first.f_star.largest == 0.1 and second.f_star.value == 0.1
    # on iid, ssd's gaps are 8, 7, 6: worse than finetune's on every seed, so it no longer dominates finetune
    assert "average_gap" in points_by_label([first])["finetune"].front
    assert "average_gap" not in points_by_label([second])["finetune"].front


def test_an_evaluation_with_cost_completes_an_older_one_without():
    older, newer = record(cost=False), record()
    (merged,) = merge_evaluations([("old.json", older), ("new.json", newer)])
    assert merged["cost"] == cost_block(0.2)
    with pytest.raises(UserError, match=r"old.json and new.json both hold an evaluation .* disagree on cost.unlearn_work \(900.0 vs 600.0\)"):
        merge_evaluations([("old.json", {**older, "cost": cost_block(0.3)}), ("new.json", newer)])
