"""The results file that `unlearn evaluate --json` writes and `unlearn report` reads: `unlearn-results/1`.

A results file is one JSON object:

    {
      "format": "unlearn-results/1",
      "unlearn_version": "0.1.0",
      "results": [RESULT, ...]              # one object per evaluated model, in command-line order
    }

Each RESULT is self-contained, so results of many files can be pooled:

    model               {"source": path, "sha256": file hash, "arch": str, "dataset": str, "num_classes": int}
    method              unlearning method from the checkpoint's metadata; for a checkpoint without one,
                        "retrain" when it was trained without this forget set, else "original"
    strategy            localization strategy of the mask used (metadata `mask_strategy`), or null
    budget              requested mask budget in (0, 1] (metadata `mask_budget`), or null
    seed                the checkpoint's seed, or null
    forget              {"source": path, "sha256": hash of the indices, "kind": iid|noniid|class|mislabel|poison|null,
                         "size": int; for a manipulated forget set also "manipulation": {"kind", "sha256", and
                         "to" (mislabel) or "target", "patch", "corner", "value" (poison)} and "known":
                         {"size", "sha256", "share"}, the part that localize and apply saw}
    metrics             {forget_accuracy, retain_accuracy, test_accuracy, mia_correctness, mia_confidence,
                         mia_entropy, mia_m_entropy, mia_prob}: numbers in %; for a manipulated forget set also
                         repaired_accuracy, remembered_accuracy and (poison) attack_success_rate
    oracle              null, or {"source", "sha256", "seed", "excluded_sha256" (str|null),
                         "matches_forget_set" (bool), "metrics": {same keys as metrics},
                         "metrics_from": null, or the results file the metrics were taken from
                         (`--oracle-results`) instead of measured,
                         "wall_time_s": seconds the oracle took to train, or null}
    gaps                null, or |metric − oracle metric| per metric key (points)
    average_gap         mean gap over forget_accuracy, test_accuracy, mia_correctness, or null
    strong_average_gap  mean gap over forget_accuracy, test_accuracy, mia_confidence, or null
    allow_mismatch      true when --allow-mismatch let a mismatch through: an oracle for another forget set,
                        or a forget set made for another dataset
    parent              null, or {"source", "sha256"} of the --parent checkpoint
    fraction_changed    share (0 … 1) of parameter scalars that differ from the parent, or null
    wall_time_s         seconds the checkpoint took to produce (metadata `wall_time_s`), or null
    cost                null (a checkpoint that records no work), or {"work": the pipeline's work — the run's own
                         plus its mask's localization — in forward-example units (examples forwarded + 2 × examples
                         back-propagated), "unlearn_work": the run's own (apply; train for an oracle; 0 for an
                         original, which unlearned nothing), "localize_work": the mask's localization or null,
                         "retrain_work": retraining on the retain set with the parent's recipe (epochs × |retain| ×
                         3) or null, "x_retrain": work ÷ retrain_work or null, "cap": the --max-cost the run was
                         given or null} (docs/cost.md)
    mask_sha256         hash of the mask the method used, or null
    mia                 {"members": int, "nonmembers": int, "forget": int, "seed": int,
                         "svc": {"C": 3.0, "gamma": "auto", "kernel": "rbf"},
                         "test_part": only with `--test-part reported`: {"part": "reported", "tune_seed": int,
                         "size": int}, the part of the test set that test accuracy and non-members come from}
    relearn             only with `--relearn` (docs/relearn.md): {"part", "part_size", "rest_size", "seed", "steps",
                         "batch_size", "momentum", "curves": [{"lr", "accuracy": [% on F ∖ A at step 0 … S],
                         "oracle_accuracy": [the oracle's], "gap": mean over steps 1 … S of accuracy − oracle's}]}

Non-finite numbers are written as null. A new field may be added within version 1; removing or
changing the meaning of a field makes version 2.

Usage:
    document = results_document([result_record(...), ...])
    runs = validate_results(json.loads(text), source="results/a.json")   # the list of RESULT objects
    runs = read_results("results/a.json")                                 # the same, from a file or '-'
"""

from __future__ import annotations

import math

import unlearn_cli
from unlearn_cli.config import Bound
from unlearn_cli.errors import UserError
from unlearn_cli.evaluate.keys import CORRECTIVE_KEYS, SVC_SETTINGS, metric_keys
from unlearn_cli.limits import load_json
from unlearn_cli.streams import read_input, reader

FORMAT = "unlearn-results/1"

_NUMBER = (int, float)
_NULL = type(None)
# dotted field -> accepted JSON types of a RESULT object (checked by validate_results)
FIELDS: dict[str, tuple] = {
    "model": (dict,), "model.sha256": (str,), "model.source": (str,),
    "method": (str, _NULL), "strategy": (str, _NULL), "budget": (*_NUMBER, _NULL), "seed": (int, _NULL),
    "forget": (dict,), "forget.sha256": (str,), "forget.kind": (str, _NULL), "forget.size": (int,),
    "metrics": (dict,), "oracle": (dict, _NULL), "gaps": (dict, _NULL),
    "average_gap": (*_NUMBER, _NULL), "strong_average_gap": (*_NUMBER, _NULL),
    "allow_mismatch": (bool,), "fraction_changed": (*_NUMBER, _NULL), "wall_time_s": (*_NUMBER, _NULL),
}
# dotted field -> accepted JSON types of fields added within version 1: checked when there (nested: when the parent is
# an object), so older files without them stay readable
OPTIONAL_FIELDS: dict[str, tuple] = {
    "cost": (dict, _NULL), **{f"cost.{name}": (*_NUMBER, _NULL) for name in
                              ("work", "unlearn_work", "localize_work", "retrain_work", "x_retrain", "cap")},
    "relearn": (dict,), "relearn.curves": (list,),
}
_TYPE_NAMES = {dict: "an object", str: "a string", int: "an integer", float: "a number", bool: "true/false",
               _NULL: "null", list: "a list"}


def finite_or_none(value):
    """Numbers for JSON: NaN and ±inf become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _clean_metrics(metrics: dict | None) -> dict | None:
    return None if metrics is None else {key: finite_or_none(float(value)) for key, value in metrics.items()}


def result_record(*, model: dict, method: str, strategy: str | None, budget: float | None, seed: int | None,
                  forget: dict, metrics: dict, oracle: dict | None, comparison: dict | None, allow_mismatch: bool,
                  parent: dict | None, fraction_changed: float | None, wall_time_s: float | None,
                  mask_sha256: str | None, mia: dict, cost: dict | None = None, relearn: dict | None = None) -> dict:
    """One RESULT object; `comparison` is `oracle_gaps(...)` (or None without an oracle); `relearn` the relearning
    test's object (`relearn.relearn_record`), absent from the record when None."""
    if oracle is not None:
        oracle = {**oracle, "metrics": _clean_metrics(oracle["metrics"]),
                  "wall_time_s": finite_or_none(oracle.get("wall_time_s"))}
    return {
        "model": model, "method": method, "strategy": strategy, "budget": finite_or_none(budget), "seed": seed,
        "forget": forget, "metrics": _clean_metrics(metrics), "oracle": oracle,
        "gaps": _clean_metrics(comparison["gaps"]) if comparison else None,
        "average_gap": finite_or_none(comparison["average_gap"]) if comparison else None,
        "strong_average_gap": finite_or_none(comparison["strong_average_gap"]) if comparison else None,
        "allow_mismatch": allow_mismatch, "parent": parent,
        "fraction_changed": finite_or_none(fraction_changed), "wall_time_s": finite_or_none(wall_time_s),
        "mask_sha256": mask_sha256, "mia": {**mia, "svc": dict(SVC_SETTINGS)},
        "cost": None if cost is None else {key: finite_or_none(value) if isinstance(value, float) else value
                                           for key, value in cost.items()},
        **({} if relearn is None else {"relearn": relearn}),
    }


def results_document(results: list[dict]) -> dict:
    return {"format": FORMAT, "unlearn_version": unlearn_cli.__version__, "results": results}


def _lookup(record: dict, dotted: str):
    value = record
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            return KeyError
        value = value[part]
    return value


def _is(value, kinds: tuple) -> bool:
    if isinstance(value, bool) and bool not in kinds:
        return False  # JSON true is not a number
    return isinstance(value, kinds)


def _check_fields(record: dict, fields: dict[str, tuple], where: str, remedy: str) -> None:
    for dotted, kinds in fields.items():
        value = _lookup(record, dotted)
        if value is KeyError:
            raise UserError(f"{where}.{dotted} is missing; the file is damaged, {remedy}")
        if not _is(value, kinds):
            names = dict.fromkeys("a number" if float in kinds and kind is int else _TYPE_NAMES[kind] for kind in kinds)
            raise UserError(f"{where}.{dotted} must be {' or '.join(names)}, got {value!r:.40}")


def _present(record: dict, fields: dict[str, tuple]) -> dict[str, tuple]:
    """The optional `fields` to check in `record`: a top-level one when it is there, a nested one when its
    parent is an object."""
    def checked(dotted: str) -> bool:
        parent = dotted.rpartition(".")[0]
        return dotted in record if not parent else isinstance(_lookup(record, parent), dict)
    return {dotted: kinds for dotted, kinds in fields.items() if checked(dotted)}


def _check_metrics(metrics, where: str) -> None:
    for key in metric_keys(corrective=True):
        if key not in metrics:
            if key in CORRECTIVE_KEYS:  # measured for a manipulated forget set only
                continue
            raise UserError(f"{where}.{key} is missing")
        if not _is(metrics[key], (*_NUMBER, _NULL)):
            raise UserError(f"{where}.{key} must be a number, got {metrics[key]!r}")


def _check_relearn(record: dict, where: str) -> None:
    """A result's `relearn` object, when there: each curve with its learning rate, its gap and its accuracies."""
    for position, curve in enumerate(record["relearn"]["curves"] if "relearn" in record else []):
        at = f"{where}.relearn.curves[{position}]"
        if not isinstance(curve, dict):
            raise UserError(f"{at} must be an object; the file is damaged, re-run `unlearn evaluate --relearn`")
        _check_fields(curve, {"lr": _NUMBER, "gap": (*_NUMBER, _NULL), "accuracy": (list,),
                              "oracle_accuracy": (list,)}, at, "re-run `unlearn evaluate --relearn`")


# (the range, what it is): the numbers that cannot be in a file unlearn wrote (Bound.holds refuses NaN and ±inf)
PERCENT = (Bound(0, 100), "0…100 (%)")
SHARE = (Bound(0, 1), "0…1")
BUDGET = (Bound(0, 1, above=True), "(0, 1]")
POINTS = (Bound(-100, 100), "−100…100 (points)")
NON_NEGATIVE = (Bound(0), "≥ 0")
POSITIVE = (Bound(0, above=True), "> 0")
# dotted field of a RESULT (`*`: every key of an object, `[]`: every item of a list) -> its range
RESULT_RANGES: dict[str, tuple] = {
    "metrics.*": PERCENT, "oracle.metrics.*": PERCENT, "gaps.*": PERCENT, "average_gap": PERCENT,
    "strong_average_gap": PERCENT, "budget": BUDGET, "fraction_changed": SHARE, "wall_time_s": NON_NEGATIVE,
    "oracle.wall_time_s": NON_NEGATIVE, "cost.work": NON_NEGATIVE, "cost.unlearn_work": NON_NEGATIVE,
    "cost.localize_work": NON_NEGATIVE, "cost.retrain_work": NON_NEGATIVE, "cost.x_retrain": NON_NEGATIVE,
    "cost.cap": POSITIVE, "relearn.curves[].lr": POSITIVE, "relearn.curves[].gap": POINTS,
    "relearn.curves[].accuracy[]": PERCENT, "relearn.curves[].oracle_accuracy[]": PERCENT,
}
# dotted field of an audit file -> its range
AUDIT_RANGES: dict[str, tuple] = {
    "pools.*.budget": BUDGET, "rows[].forget_score": SHARE, "rows[].attack_accuracy": SHARE,
    "rows[].attack_auc": SHARE, "rows[].final_score": NON_NEGATIVE, "rows[].kl_gaussian.*": NON_NEGATIVE,
    "rows[].kl_binned.*": NON_NEGATIVE, "rows[].epsilon.median": NON_NEGATIVE, "rows[].accuracy.*.*": PERCENT,
    "rows[].intervals.forget_score[]": SHARE, "rows[].intervals.attack_accuracy[]": SHARE,
    "rows[].intervals.attack_auc[]": SHARE, "rows[].intervals.kl_gaussian_mean[]": NON_NEGATIVE,
    "rows[].relearn[].lr": POSITIVE, "rows[].relearn[].gap": POINTS, "rows[].relearn[].interval[]": POINTS,
}


def _at(value, pattern: list[str], path: str):
    """(path, value) of every number that dotted `pattern` reaches in `value`; absent or null parts reach nothing."""
    if not pattern:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            yield path, value
        return
    part, rest = pattern[0], pattern[1:]
    key, listed = part.removesuffix("[]"), part.endswith("[]")
    if not isinstance(value, dict):
        return
    children = value.items() if key == "*" else [(key, value[key])] if key in value else []
    for name, child in children:
        if listed:
            for position, item in enumerate(child if isinstance(child, list) else []):
                yield from _at(item, rest, f"{path}.{name}[{position}]")
        else:
            yield from _at(child, rest, f"{path}.{name}")


def _nonfinite(value, path: str = ""):
    """The path of the first NaN or ±inf in a parsed JSON value, or None (JSON's NaN, Infinity and 1e999 read as such)."""
    if isinstance(value, float):
        return None if math.isfinite(value) else path
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        found = _nonfinite(item, f"{path}[{key}]" if isinstance(key, int) else f"{path}.{key}")
        if found is not None:
            return found
    return None


def check_numbers(document, ranges: dict[str, tuple], source: str, what: str, remedy: str) -> None:
    """Refuse, naming the file and the field, a number outside its range in `ranges`, then any NaN or ±inf: unlearn
    writes null where there is no number, so neither can be in a file it wrote."""
    for pattern, (bound, described) in ranges.items():
        for path, value in _at(document, pattern.split("."), ""):
            if not bound.holds(value):
                problem = "outside" if math.isfinite(value) else "not a finite number in"
                raise UserError(f"{source}: {path.lstrip('.')} is {value!r}, {problem} {described}; it is not a {what} "
                                f"unlearn wrote, {remedy}")
    path = _nonfinite(document)
    if path is not None:
        raise UserError(f"{source}: {path.lstrip('.')} is not a finite number; unlearn writes null where there is "
                        f"none, so the {what} is damaged: {remedy}")


def validate_results(document, source: str) -> list[dict]:
    """The RESULT objects of a parsed results file; anything off is a one-line UserError naming the field."""
    if not isinstance(document, dict):
        raise UserError(f"{source}: not an unlearn results file (expected a JSON object); write one with `unlearn evaluate --json`")
    found = document.get("format")
    if found != FORMAT:
        if isinstance(found, str) and found.startswith("unlearn-results/"):
            raise UserError(f"{source}: results format {found!r} is not readable by unlearn {unlearn_cli.__version__} "
                            f"(reads {FORMAT}); re-run `unlearn evaluate` or upgrade")
        raise UserError(f"{source}: not an unlearn results file (format {found!r}, expected {FORMAT}); "
                        f"write one with `unlearn evaluate --json`")
    results = document.get("results")
    if not isinstance(results, list) or not results:
        raise UserError(f"{source}: 'results' must be a non-empty list of evaluated models")
    for position, record in enumerate(results):
        where = f"{source}: results[{position}]"
        if not isinstance(record, dict):
            raise UserError(f"{where} must be an object")
        _check_fields(record, FIELDS, where, "re-run `unlearn evaluate`")
        _check_fields(record, _present(record, OPTIONAL_FIELDS), where, "re-run `unlearn evaluate`")
        _check_relearn(record, where)
        _check_metrics(record["metrics"], f"{where}.metrics")
        if record["oracle"] is not None:
            if not isinstance(record["oracle"].get("sha256"), str) or not isinstance(record["oracle"].get("metrics"), dict):
                raise UserError(f"{where}.oracle needs 'sha256' and 'metrics'")
            _check_metrics(record["oracle"]["metrics"], f"{where}.oracle.metrics")
    check_numbers({"results": results}, {f"results[].{field}": bounds for field, bounds in RESULT_RANGES.items()},
                  source, "results file", "re-run `unlearn evaluate`")
    return results


@reader("results file")
def read_results(path: str) -> list[dict]:
    """The RESULT objects of results file `path` ('-': stdin); unreadable or malformed input is a UserError."""
    source = "stdin" if path == "-" else str(path)
    document = load_json(read_input(path, "results file"), source, "results")
    return validate_results(document, source)


AUDIT_FORMAT = "unlearn-audit/1"
# dotted field -> accepted JSON types of an audit file (see docs/results-schema.md), and of each of its rows
AUDIT_FIELDS: dict[str, tuple] = {
    "forget": (dict,), "forget.sha256": (str,), "forget.kind": (str, _NULL), "forget.size": (int,),
    "pools": (dict,), "pools.unlearned": (dict,), "pools.retrained": (dict,), "rows": (list,),
}
AUDIT_ROW_FIELDS: dict[str, tuple] = {
    "name": (str,), "pool": (str,), "examples": (str,), "models": (list,),
    "forget_score": (*_NUMBER, _NULL), "final_score": (*_NUMBER, _NULL), "attack_accuracy": (*_NUMBER, _NULL),
    "attack_auc": (*_NUMBER, _NULL), "kl_gaussian.mean": (*_NUMBER, _NULL), "kl_gaussian.p95": (*_NUMBER, _NULL),
    "kl_binned.mean": (*_NUMBER, _NULL), "epsilon.median": (*_NUMBER, _NULL), "resolution": (int,),
    "accuracy.first": (dict,), "accuracy.second": (dict,),
}
_POOL_FIELDS = {"size": (int,), "method": (str, _NULL), "strategy": (str, _NULL), "budget": (*_NUMBER, _NULL),
                "models": (list,)}


def validate_audit(document: dict, source: str) -> dict:
    """An `unlearn audit --json` document, checked field by field (a one-line UserError naming the field)."""
    remedy = "re-run `unlearn audit`"
    _check_fields(document, AUDIT_FIELDS, source, remedy)
    for name, pool in document["pools"].items():
        if not isinstance(pool, dict):
            raise UserError(f"{source}.pools.{name} must be an object")
        _check_fields(pool, _POOL_FIELDS, f"{source}.pools.{name}", remedy)
        for position, model in enumerate(pool["models"]):
            if not isinstance(model, dict) or not isinstance(model.get("sha256"), str):
                raise UserError(f"{source}.pools.{name}.models[{position}] needs a 'sha256'; {remedy}")
    if not document["rows"]:
        raise UserError(f"{source}: 'rows' is empty; {remedy}")
    for position, row in enumerate(document["rows"]):
        if not isinstance(row, dict):
            raise UserError(f"{source}.rows[{position}] must be an object")
        _check_fields(row, AUDIT_ROW_FIELDS, f"{source}.rows[{position}]", remedy)
        for side in ("first", "second"):
            for key in ("forget", "retain", "test"):
                if not _is(row["accuracy"][side].get(key), (*_NUMBER, _NULL)):
                    raise UserError(f"{source}.rows[{position}].accuracy.{side}.{key} must be a number")
        _check_audit_relearn(row.get("relearn"), f"{source}.rows[{position}].relearn", remedy)
    check_numbers(document, AUDIT_RANGES, source, "audit file", remedy)
    return document


def _check_audit_relearn(entries, where: str, remedy: str) -> None:
    """A row's `relearn` (optional, `audit --relearn`): null, or a list of {lr, gap, interval, …} per learning rate."""
    if entries is None:
        return
    if not isinstance(entries, list):
        raise UserError(f"{where} must be a list or null; {remedy}")
    for position, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise UserError(f"{where}[{position}] must be an object; {remedy}")
        _check_fields(entry, {"lr": _NUMBER, "gap": (*_NUMBER, _NULL), "interval": (list, _NULL)},
                      f"{where}[{position}]", remedy)
        if entry["interval"] is not None and (len(entry["interval"]) != 2 or not all(
                _is(bound, (*_NUMBER, _NULL)) for bound in entry["interval"])):
            raise UserError(f"{where}[{position}].interval must be [low, high]; {remedy}")


@reader("results or audit file")
def read_report_input(path: str) -> tuple[str, object]:
    """("results", RESULT objects) of a results file, or ("audit", the document) of an audit file."""
    source = "stdin" if path == "-" else str(path)
    document = load_json(read_input(path, "results file"), source, "results")
    if isinstance(document, dict) and document.get("format") == AUDIT_FORMAT:
        return "audit", validate_audit(document, source)
    if isinstance(document, dict) and str(document.get("format", "")).startswith("unlearn-audit/"):
        raise UserError(f"{source}: audit format {document['format']!r} is not readable by unlearn "
                        f"{unlearn_cli.__version__} (reads {AUDIT_FORMAT}); re-run `unlearn audit` or upgrade")
    return "results", validate_results(document, source)
