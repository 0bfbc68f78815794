"""Choosing a pipeline's settings: candidates from a grid, scored without an oracle (or with one), the hopeless
ones stopped early. The search (runs/tune.py) computes masks and unlearns with the same steps as `localize` and
`apply` (runs/localize.py, runs/unlearn.py); `unlearn tune` (cli/tune.py) writes the choice as a config YAML.

Usage:
    parts = tuning_parts(data.test_labels, data.train_labels[forget], seed=0)    # R, V and the reported part
    score = oracle_free_score(candidate_outputs, original_outputs)              # {"objective", parts…}
    trials = successive_halving(candidates, run_candidate, rungs=(0.25, 0.5, 1.0))
"""

from unlearn_cli.tune.objectives import (OracleFreeWeights, Outputs, ks_distance, objective_standard_error,
                                         oracle_free_score, oracle_score)
from unlearn_cli.tune.reference import TuningParts, halve_test_set, tuning_parts
from unlearn_cli.tune.search import (Candidate, Trial, cap_share, cheapest_within_standard_error, chosen_trial,
                                     edge_extensions, expand_grid, extend_edges, parse_grid, planned_runs,
                                     rank_candidates, successive_halving)

__all__ = ["Candidate", "OracleFreeWeights", "Outputs", "Trial", "TuningParts", "cap_share",
           "cheapest_within_standard_error", "chosen_trial", "edge_extensions", "expand_grid", "extend_edges",
           "halve_test_set", "ks_distance", "objective_standard_error", "oracle_free_score", "oracle_score",
           "parse_grid", "planned_runs", "rank_candidates", "successive_halving", "tuning_parts"]
