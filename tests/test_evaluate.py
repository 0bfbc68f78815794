"""`unlearn evaluate`: the MIA protocol, the metrics, the oracle comparison and the command's refusals."""

import json
import math

import pytest
import torch

from conftest import run_cli
from unlearn_cli.errors import UserError
from unlearn_cli.evaluate import mia
from unlearn_cli.evaluate.metrics import evaluate_outputs, fraction_changed, oracle_gaps
from unlearn_cli.evaluate.mia import FEATURES, mia_scores, shadow_split
from unlearn_cli.io.checkpoint import Provenance, checkpoint_bytes, checkpoint_metadata, load_checkpoint
from unlearn_cli.io.forget import read_forget_set
from unlearn_cli.io.safetensors_file import dump_safetensors
from unlearn_cli.models import create_model


# --- MIA features: exact small examples -------------------------------------------------------------

P = torch.tensor([[0.7, 0.2, 0.1], [0.7, 0.2, 0.1]], dtype=torch.float64)
Y = torch.tensor([0, 1])


def test_m_entropy_is_song_and_mittal_formula():
    # −(1 − p_y)·ln p_y − Σ_{i≠y} p_i·ln(1 − p_i)
    # y = 0: 0.3·(−ln 0.7) + 0.2·(−ln 0.8) + 0.1·(−ln 0.9) = 0.1070025 + 0.0446287 + 0.0105361 = 0.1621672
    # y = 1: 0.8·(−ln 0.2) + 0.7·(−ln 0.3) + 0.1·(−ln 0.9) = 1.2875503 + 0.8427810 + 0.0105361 = 2.1408673
    values = FEATURES.get("m-entropy")(P, Y).flatten()
    assert values.tolist() == pytest.approx([0.1621672, 2.1408673], abs=1e-6)


def test_other_features_by_hand():
    assert FEATURES.get("correctness")(P, Y).flatten().tolist() == [1.0, 0.0]
    assert FEATURES.get("confidence")(P, Y).flatten().tolist() == pytest.approx([0.7, 0.2])
    # −(0.7 ln 0.7 + 0.2 ln 0.2 + 0.1 ln 0.1) = 0.2496722 + 0.3218876 + 0.2302585 = 0.8018183
    assert FEATURES.get("entropy")(P, Y).flatten().tolist() == pytest.approx([0.8018183] * 2, abs=1e-6)
    assert torch.equal(FEATURES.get("prob")(P, Y), P)


def test_m_entropy_stays_finite_at_saturation():
    saturated = torch.tensor([[1.0, 0.0, 0.0]], dtype=torch.float64)
    for label in (0, 1):
        assert math.isfinite(float(FEATURES.get("m-entropy")(saturated, torch.tensor([label]))))


# --- MIA scores on separable shadow sets ------------------------------------------------------------

def _separable(count: int, classes: int = 4, seed: int = 0):
    """Members: confident and correct. Non-members: near-uniform, argmax on a wrong class."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, classes, (count,), generator=generator)
    spread = torch.rand(count, generator=generator, dtype=torch.float64)
    members = torch.empty(count, classes, dtype=torch.float64)
    members[:] = ((0.1 - 0.09 * spread) / (classes - 1))[:, None]
    members[torch.arange(count), labels] = 0.9 + 0.09 * spread
    nonmembers = torch.empty(count, classes, dtype=torch.float64)
    wrong = (labels + 1) % classes
    nonmembers[:] = ((0.7 - 0.05 * spread) / (classes - 1))[:, None]
    nonmembers[torch.arange(count), wrong] = 0.3 + 0.05 * spread
    return members.log(), nonmembers.log(), labels  # log-probabilities are valid logits


@pytest.mark.parametrize("feature", FEATURES.names())
def test_separable_members_score_zero_and_nonmembers_one_hundred(feature):
    members, nonmembers, labels = _separable(40)
    forget_members = mia_scores(members, labels, nonmembers, labels, members[:15], labels[:15], features=[feature])
    forget_nonmembers = mia_scores(members, labels, nonmembers, labels, nonmembers[:15], labels[:15], features=[feature])
    assert forget_members == {feature: 0.0}
    assert forget_nonmembers == {feature: 100.0}


def test_mix_of_members_and_nonmembers_scores_their_share():
    members, nonmembers, labels = _separable(40)
    forget = torch.cat([members[:6], nonmembers[:2]])  # 2 of 8 unseen -> 25 %
    scores = mia_scores(members, labels, nonmembers, labels, forget, torch.cat([labels[:6], labels[:2]]))
    assert scores == {name: 25.0 for name in FEATURES.names()}


def test_unequal_shadow_sides_are_subsampled_to_equal_size(monkeypatch):
    sizes = []

    def spy(member_features, nonmember_features, forget_features):
        sizes.append((len(member_features), len(nonmember_features)))
        return torch.zeros(len(forget_features)).numpy()

    monkeypatch.setattr(mia, "_fit_predict", spy)
    members, nonmembers, labels = _separable(50)
    mia_scores(members, labels, nonmembers[:20], labels[:20], members[:5], labels[:5], features=["confidence"])
    mia_scores(members[:7], labels[:7], nonmembers, labels, members[:5], labels[:5], features=["confidence"])
    assert sizes == [(20, 20), (7, 7)]


def test_identical_rows_fit_as_weights_give_the_plain_svc_answer():
    from sklearn.svm import SVC

    generator = torch.Generator().manual_seed(1)
    members = (torch.rand(300, 1, generator=generator) * 20).round().double().numpy() / 20 + 0.3
    nonmembers = (torch.rand(300, 1, generator=generator) * 20).round().double().numpy() / 20
    forget = (torch.rand(100, 1, generator=generator) * 26).round().double().numpy() / 20
    inputs = torch.cat([torch.from_numpy(members), torch.from_numpy(nonmembers)]).numpy()
    targets = [1] * 300 + [0] * 300
    plain = SVC(C=3, gamma="auto", kernel="rbf").fit(inputs, targets).predict(forget)
    assert (mia._fit_predict(members, nonmembers, forget) == plain).all()


# --- shadow sets ------------------------------------------------------------------------------------

def test_members_copy_the_test_label_distribution():
    retain = torch.tensor([0] * 50 + [1] * 30 + [2] * 40)
    test = torch.tensor([0] * 5 + [1] * 12 + [2] * 3)
    members, nonmembers = shadow_split(retain, test, seed=0)
    assert torch.bincount(retain[members], minlength=3).tolist() == [5, 12, 3]
    assert nonmembers.tolist() == list(range(20))  # the whole test set
    assert members.tolist() == sorted(set(members.tolist()))


def test_smaller_retain_set_keeps_both_sides_equal_and_alike():
    retain = torch.tensor([0] * 10 + [1] * 20 + [2] * 5)  # class 2 allows half of the test set's 10
    test = torch.tensor([0] * 40 + [1] * 50 + [2] * 10)
    members, nonmembers = shadow_split(retain, test, seed=3)
    member_counts = torch.bincount(retain[members], minlength=3).tolist()
    assert member_counts == torch.bincount(test[nonmembers], minlength=3).tolist()
    assert member_counts == [10, 12, 2]  # scale = min(10/40, 20/50, 5/10) = 1/4: ⌊40/4⌋, ⌊50/4⌋, ⌊10/4⌋
    assert len(members) == len(nonmembers) == 24


def test_class_missing_from_retain_set_is_left_out():
    retain = torch.tensor([0] * 30 + [1] * 30)  # class 2 entirely forgotten
    test = torch.tensor([0] * 10 + [1] * 10 + [2] * 10)
    members, nonmembers = shadow_split(retain, test, seed=0)
    assert torch.bincount(test[nonmembers], minlength=3).tolist() == [10, 10, 0]
    assert len(members) == 20


def test_shadow_split_is_seeded():
    retain, test = torch.arange(200) % 4, torch.arange(40) % 4
    first, second, third = (shadow_split(retain, test, seed) for seed in (0, 0, 1))
    assert torch.equal(first[0], second[0]) and not torch.equal(first[0], third[0])


# --- metrics ----------------------------------------------------------------------------------------

def test_accuracies_of_constructed_outputs():
    members, nonmembers, labels = _separable(20)
    train_logits = torch.cat([members, nonmembers])  # examples 0..19 correct, 20..39 wrong
    train_labels = torch.cat([labels, labels])
    forget = torch.tensor([0, 1, 20, 21, 22])  # 2 of 5 correct
    metrics = evaluate_outputs(train_logits, train_labels, members[:10], labels[:10], forget,
                               member_indices=torch.arange(2, 12), nonmember_indices=torch.arange(10))
    assert metrics["forget_accuracy"] == pytest.approx(40.0)
    assert metrics["retain_accuracy"] == pytest.approx(100 * 18 / 35)
    assert metrics["test_accuracy"] == 100.0
    assert set(metrics) >= {"mia_correctness", "mia_confidence", "mia_entropy", "mia_m_entropy", "mia_prob"}


def test_average_gaps():
    metrics = {"forget_accuracy": 90.0, "retain_accuracy": 99.0, "test_accuracy": 85.0, "mia_correctness": 10.0,
               "mia_confidence": 30.0}
    oracle = {"forget_accuracy": 80.0, "retain_accuracy": 98.0, "test_accuracy": 86.0, "mia_correctness": 19.0,
              "mia_confidence": 40.0}
    result = oracle_gaps(metrics, oracle)
    assert result["gaps"]["retain_accuracy"] == 1.0
    assert result["average_gap"] == pytest.approx((10 + 1 + 9) / 3)
    assert result["strong_average_gap"] == pytest.approx((10 + 1 + 10) / 3)


def test_fraction_of_parameters_changed():
    parent = {"a": torch.zeros(2, 3), "b": torch.zeros(4)}
    child = {"a": torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 2.0]]), "b": torch.tensor([0.0, 0.0, 0.0, -1.0])}
    assert fraction_changed(child.items(), parent.items()) == pytest.approx(3 / 10)
    with pytest.raises(UserError, match="different parameters"):
        fraction_changed({"a": torch.zeros(2, 3)}.items(), parent.items())


# --- the command ------------------------------------------------------------------------------------

def _rewrite(source, path, change=None, **meta_changes):
    """A copy of checkpoint `source` with some metadata changed and `change(model)` applied."""
    checkpoint = load_checkpoint(str(source))
    if change is not None:
        with torch.no_grad():
            change(checkpoint.model)
    meta = {**checkpoint.meta, **{key: str(value) for key, value in meta_changes.items()}}
    path.write_bytes(checkpoint_bytes(checkpoint.model, meta))
    return path


def _unlearned(tiny_run, path, **extra):
    """An unlearned-looking checkpoint: the original with 5 weights changed, and apply's metadata."""
    original = load_checkpoint(str(tiny_run["original"]))

    def change(model):
        first = next(model.parameters())
        first.view(-1)[:5] += 1.0

    return _rewrite(tiny_run["original"], path, change, method="finetune", parent_sha256=original.sha256,
                    mask_sha256="ab" * 32, mask_strategy="del", mask_budget="0.3", wall_time_s="1.5", seed="7",
                    **extra), original


def _evaluate(*arguments):
    result = run_cli("evaluate", *arguments, "--quiet", "--json", "-")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_evaluate_with_oracle_and_parent(tiny_run, tmp_path):
    unlearned, original = _unlearned(tiny_run, tmp_path / "u.safetensors")
    document = _evaluate(unlearned, tiny_run["oracle"], "--forget", tiny_run["forget"], "--oracle", tiny_run["oracle"],
                         "--parent", tiny_run["original"])
    assert document["format"] == "unlearn-results/1"
    first, second = document["results"]
    forget = read_forget_set(str(tiny_run["forget"]))
    assert first["method"] == "finetune" and first["strategy"] == "del" and first["budget"] == 0.3
    assert first["seed"] == 7 and first["wall_time_s"] == 1.5 and first["mask_sha256"] == "ab" * 32
    assert first["forget"]["sha256"] == forget.sha256 and first["forget"]["kind"] == "noniid"
    total = sum(p.numel() for p in original.model.parameters())
    assert first["fraction_changed"] == pytest.approx(5 / total)
    gaps = first["gaps"]
    for key, value in first["metrics"].items():
        assert 0 <= value <= 100
        assert gaps[key] == pytest.approx(abs(value - first["oracle"]["metrics"][key]))
    assert first["average_gap"] == pytest.approx((gaps["forget_accuracy"] + gaps["test_accuracy"] + gaps["mia_correctness"]) / 3)
    assert first["strong_average_gap"] == pytest.approx((gaps["forget_accuracy"] + gaps["test_accuracy"] + gaps["mia_confidence"]) / 3)
    assert first["oracle"]["matches_forget_set"] is True and first["allow_mismatch"] is False
    assert first["mia"]["members"] == first["mia"]["nonmembers"] > 0
    # the oracle evaluated as a model: called "retrain", zero gaps, no parent relation recorded
    assert second["method"] == "retrain" and second["average_gap"] == 0 and second["fraction_changed"] is None
    assert second["metrics"] == first["oracle"]["metrics"]


def test_same_seed_same_numbers_and_table_on_stderr(tiny_run):
    arguments = (tiny_run["original"], "--forget", tiny_run["forget"], "--json", "-")
    first, second = run_cli("evaluate", *arguments), run_cli("evaluate", *arguments)
    assert first.exit_code == second.exit_code == 0
    assert json.loads(first.stdout) == json.loads(second.stdout)
    assert "MIA-m-entropy" in first.stderr and "forget acc" in first.stderr


def test_oracle_without_this_forget_set_is_refused(tiny_run, tmp_path):
    other = _rewrite(tiny_run["oracle"], tmp_path / "other.safetensors", excluded_sha256="0" * 64)
    for oracle, message in ((tiny_run["original"], "the oracle was trained on the whole training set"),
                            (other, "the oracle was trained without another forget set")):
        result = run_cli("evaluate", tiny_run["original"], "--forget", tiny_run["forget"], "--oracle", oracle, "-q")
        assert result.exit_code == 1
        assert message in result.stderr and "--allow-mismatch" in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
    document = _evaluate(tiny_run["original"], "--forget", tiny_run["forget"], "--oracle", other, "--allow-mismatch")
    assert document["results"][0]["allow_mismatch"] is True
    assert document["results"][0]["oracle"]["matches_forget_set"] is False


def test_oracle_of_another_dataset_is_refused(tiny_run, tmp_path):
    oracle = _rewrite(tiny_run["oracle"], tmp_path / "o.safetensors", dataset="synthetic")
    result = run_cli("evaluate", tiny_run["original"], "--forget", tiny_run["forget"], "--oracle", oracle, "-q")
    assert result.exit_code == 1
    assert "the oracle was trained on synthetic" in result.stderr and "compare models of the same dataset" in result.stderr


def test_model_with_other_classes_is_refused(tiny_run, tmp_path):
    model = create_model("mlp", 5, (1, 8, 8), width=32)
    meta = checkpoint_metadata(arch="mlp", arch_kwargs={"width": 32}, num_classes=5, dataset="digits", dataset_kwargs={},
                               input_shape=(1, 8, 8), config={}, wall_time_s=0.0, provenance=Provenance(seed=0))
    path = tmp_path / "five.safetensors"
    path.write_bytes(checkpoint_bytes(model, meta))
    result = run_cli("evaluate", path, "--forget", tiny_run["forget"], "-q")
    assert result.exit_code == 1
    assert "has 5 classes but dataset digits has 10" in result.stderr


def test_non_finite_weights_are_refused(tiny_run, tmp_path):
    checkpoint = load_checkpoint(str(tiny_run["original"]))
    state = checkpoint.model.state_dict()
    name = next(iter(state))
    state[name] = state[name].clone()
    state[name].view(-1)[0] = float("nan")
    path = tmp_path / "nan.safetensors"
    path.write_bytes(dump_safetensors(state, checkpoint.meta))
    result = run_cli("evaluate", path, "--forget", tiny_run["forget"], "-q")
    assert result.exit_code == 1 and "holds NaN or Inf values" in result.stderr


def test_parent_mismatch_is_refused(tiny_run, tmp_path):
    unlearned, _ = _unlearned(tiny_run, tmp_path / "u.safetensors")
    result = run_cli("evaluate", unlearned, "--forget", tiny_run["forget"], "--parent", tiny_run["oracle"], "-q")
    assert result.exit_code == 1 and "was unlearned from another checkpoint" in result.stderr


def test_forget_set_is_required(tiny_run):
    result = run_cli("evaluate", tiny_run["original"], "-q")
    assert result.exit_code == 1 and "--forget is required" in result.stderr


def test_oracle_metrics_reused_from_an_earlier_results_file(tiny_run, tmp_path):
    unlearned, _ = _unlearned(tiny_run, tmp_path / "u.safetensors")
    earlier = tmp_path / "original.json"
    result = run_cli("evaluate", tiny_run["original"], "--forget", tiny_run["forget"], "--oracle", tiny_run["oracle"],
                     "-q", "--json", earlier)
    assert result.exit_code == 0, result.output
    common = (unlearned, "--forget", tiny_run["forget"], "--oracle", tiny_run["oracle"], "--parent", tiny_run["original"])
    measured = _evaluate(*common)["results"][0]
    reused = _evaluate(*common, "--oracle-results", earlier)["results"][0]
    assert measured["oracle"].pop("metrics_from") is None
    assert reused["oracle"].pop("metrics_from") == str(earlier)
    assert reused == measured
    # the oracle's own results (evaluated as a model) serve as well
    own = tmp_path / "oracle.json"
    assert run_cli("evaluate", tiny_run["oracle"], "--forget", tiny_run["forget"], "-q", "--json", own).exit_code == 0
    assert _evaluate(*common, "--oracle-results", own)["results"][0]["gaps"] == measured["gaps"]


def test_oracle_results_of_another_setting_are_refused(tiny_run, tmp_path):
    earlier = tmp_path / "original.json"
    assert run_cli("evaluate", tiny_run["original"], "--forget", tiny_run["forget"], "--oracle", tiny_run["oracle"],
                   "-q", "--json", earlier).exit_code == 0
    base = (tiny_run["original"], "--forget", tiny_run["forget"], "-q", "--json", tmp_path / "out.json")
    other_oracle = _rewrite(tiny_run["oracle"], tmp_path / "o2.safetensors", seed=5)
    for extra, message in (
            (("--oracle", tiny_run["oracle"], "--oracle-results", earlier, "--seed", "1"),
             "holds no measurement of oracle"),
            (("--oracle", other_oracle, "--oracle-results", earlier), "holds no measurement of oracle"),
            (("--oracle-results", earlier), "--oracle-results gives the metrics of the --oracle checkpoint; pass --oracle too")):
        result = run_cli("evaluate", *base, *extra)
        assert result.exit_code == 1 and message in result.stderr, result.output
        assert len(result.stderr.strip().splitlines()) == 1
        assert not (tmp_path / "out.json").exists()
