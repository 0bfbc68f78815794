"""Choosing a pipeline's settings: candidates from a grid, scored without an oracle (or with one), the hopeless
ones stopped early. The search (runs/tune.py) computes masks and unlearns with the same steps as `localize` and
`apply` (runs/localize.py, runs/unlearn.py); `unlearn tune` (cli/tune.py) writes the choice as a config YAML.

Usage:
    parts = tuning_parts(data.test_labels, data.train_labels[forget], seed=0)    # R, V and the reported part
    score = oracle_free_score(candidate_outputs, original_outputs)              # {"objective", parts…}
    trials = successive_halving(candidates, run_candidate, rungs=(0.25, 0.5, 1.0))
    score = mean_score(scores_on_each_validation_set)                           # the mean, its standard error
"""

from unlearn_cli.tune.objectives import (OracleFreeWeights, Outputs, ks_distance, objective_standard_error,
                                         oracle_free_score, oracle_score)
from unlearn_cli.tune.reference import (RETAIN_SAMPLE, TuningParts, draw_validation_sets, halve_test_set,
                                        retain_sample, tuning_parts)
from unlearn_cli.tune.search import (Candidate, Trial, cap_share, cheapest_within_standard_error, chosen_trial,
                                     edge_extensions, expand_grid, extend_edges, parse_grid, planned_runs,
                                     rank_candidates, successive_halving)
from unlearn_cli.tune.selection import mean_score, selection_stability, set_objectives, standard_error_of_mean

__all__ = ["Candidate", "OracleFreeWeights", "Outputs", "RETAIN_SAMPLE", "Trial", "TuningParts", "cap_share",
           "cheapest_within_standard_error", "chosen_trial", "draw_validation_sets", "edge_extensions", "expand_grid",
           "extend_edges", "halve_test_set", "ks_distance", "mean_score", "objective_standard_error",
           "oracle_free_score", "oracle_score", "parse_grid", "planned_runs", "rank_candidates", "retain_sample",
           "selection_stability", "set_objectives", "standard_error_of_mean", "successive_halving", "tuning_parts"]
