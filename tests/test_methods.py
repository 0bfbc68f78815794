"""Unlearning methods: the mask guarantee for every registered method, and what each paper says it does."""

import copy
import re

import pytest
import torch
import typer
from torch import nn

from unlearn_cli.cli.app import app
from unlearn_cli.data import create_dataset
from unlearn_cli.engine import LoopSettings, accuracy, seed_everything, train_classifier
from unlearn_cli.errors import UserError
from unlearn_cli.methods import UnlearnData, get_method, list_methods, method_config, method_options
from unlearn_cli.methods._common import UpdateConfig, fresh_initialization
from unlearn_cli.methods.iu import IUConfig
from unlearn_cli.methods.random_label import wrong_labels
from unlearn_cli.methods.retrain import resolved as resolved_recipe
from unlearn_cli.methods.rft import reset_masked
from unlearn_cli.models import classifier_head_names, create_model
from unlearn_cli.runs.calibrate import Calibration

ARCHS = {"mlp": {"width": 32}, "cnn": {"width": 4, "depth": 2}}  # the cnn has BatchNorm
FORGET_CLASS = 3
MASKED_METHODS = [name for name in list_methods() if get_method(name).uses_mask]
LOOP_METHODS = [name for name in list_methods() if issubclass(get_method(name).config_class, UpdateConfig)]


@pytest.fixture(scope="module")
def digits():
    return create_dataset("digits")


def trained(digits, arch: str, epochs: int) -> tuple[nn.Module, UnlearnData]:
    factory = lambda: create_model(arch, 10, (1, 8, 8), **ARCHS[arch])  # noqa: E731
    seed_everything(0)
    model = factory()
    train_classifier(model, digits, None, LoopSettings(epochs=epochs, lr=0.1), 64, 0, torch.device("cpu"))
    for parameter in model.parameters():
        parameter.grad = None
    forget = torch.nonzero(digits.train_labels == FORGET_CLASS).flatten()  # a class the original has learned
    return model, UnlearnData.split(digits, forget, new_model=factory)


@pytest.fixture(scope="module")
def models(digits):
    return {"mlp": trained(digits, "mlp", 10), "cnn": trained(digits, "cnn", 2)}


def random_mask(model: nn.Module, seed: int = 0) -> dict[str, torch.Tensor]:
    """~30% of entries of most tensors; the first tensor entirely excluded, the last entirely included."""
    generator = torch.Generator().manual_seed(seed)
    parameters = list(model.named_parameters())
    mask = {name: torch.rand(p.shape, generator=generator) < 0.3 for name, p in parameters}
    mask[parameters[0][0]][:] = False
    mask[parameters[-1][0]][:] = True
    return mask


def stress_config(name: str, **overrides):
    """Short runs with momentum, weight decay and a large L1 term in play, where the method has them."""
    wanted = {"epochs": 1, "max_steps": 4, "weight_decay": 0.05, "momentum": 0.9, "gamma": 1e-2,
              "selection_weight": 0.5, "num_samples": 16, "lr": 0.05, **overrides}
    options = method_options(name)
    return method_config(name, {key: value for key, value in wanted.items() if key in options})


def forget_test_retain(model, data):
    """(forget accuracy, test accuracy on the classes that are kept)."""
    kept = torch.nonzero(data.dataset.test_labels != FORGET_CLASS).flatten()
    return (accuracy(model, data.dataset.batches("train", data.forget, 512)),
            accuracy(model, data.dataset.batches("test", kept, 512)))


@pytest.mark.parametrize("arch", list(ARCHS))
@pytest.mark.parametrize("name", MASKED_METHODS)
def test_parameters_outside_the_mask_are_bit_identical(models, name, arch):
    original, data = models[arch]
    model = copy.deepcopy(original)
    mask = random_mask(model)
    cfg = stress_config(name)
    if get_method(name).conv_only and arch == "mlp":  # declared: refused in one line, the model left as it was
        with pytest.raises(UserError, match=f"method {name} .* this model has none"):
            get_method(name).run(model, data, mask, cfg)
        assert all(torch.equal(a, b) for a, b in zip(original.parameters(), model.parameters()))
        return
    unlearned = get_method(name).run(model, data, mask, cfg)
    head = set(classifier_head_names(unlearned)) if getattr(cfg, "train_head", False) else set()
    before, after = dict(original.named_parameters()), dict(unlearned.named_parameters())
    changed_inside = 0
    for parameter_name, selected in mask.items():
        if parameter_name in head:
            continue
        old, new = before[parameter_name].detach(), after[parameter_name].detach()
        assert torch.equal(old[~selected], new[~selected]), f"{name} changed {parameter_name} outside the mask"
        changed_inside += int((old[selected] != new[selected]).sum())
    assert changed_inside > 0, f"{name} changed nothing inside the mask"


@pytest.mark.parametrize("name", list_methods())
def test_calibration_changes_only_the_head_and_only_by_its_scale(models, name):
    # the one declared exception to the mask: `apply --calibrate` multiplies the classifier head by one scale
    original, data = models["cnn" if get_method(name).conv_only else "mlp"]
    model = copy.deepcopy(original)
    mask = random_mask(model)
    planned = Calibration.before(original, data.dataset, data.forget, seed=0, device=torch.device("cpu"))
    unlearned = get_method(name).run(model, data, mask, stress_config(name))
    before = {key: value.detach().clone() for key, value in unlearned.named_parameters()}
    scale = planned.apply(unlearned, data.dataset, torch.device("cpu"))
    assert scale > 0 and scale != 1.0
    head = set(classifier_head_names(unlearned))
    for key, value in unlearned.named_parameters():
        expected = before[key] * scale if key in head else before[key]
        assert torch.equal(value.detach(), expected), f"{name}: {key}"


@pytest.mark.parametrize("name", [name for name in LOOP_METHODS if "train_head" in method_options(name)])
def test_rft_trains_the_whole_head_only_with_train_head(models, name):
    original, data = models["mlp"]
    head = classifier_head_names(original)
    mask = random_mask(original)
    for train_head in (True, False):
        unlearned = get_method(name).run(copy.deepcopy(original), data, mask, stress_config(name, train_head=train_head))
        before, after = dict(original.named_parameters()), dict(unlearned.named_parameters())
        weight = head[0]  # partly masked: the head's bias is entirely in the mask
        outside = ~mask[weight]
        assert outside.any()
        unchanged = torch.equal(before[weight].detach()[outside], after[weight].detach()[outside])
        assert unchanged is not train_head


@pytest.mark.parametrize("name", LOOP_METHODS)
def test_all_zero_tensors_get_no_gradient_and_freeze_bn_keeps_running_statistics(models, name):
    original, data = models["cnn"]
    mask = random_mask(original)
    frozen = [parameter_name for parameter_name, selected in mask.items() if not selected.any()]
    assert frozen
    results = {}
    for freeze_bn in (True, False):
        model = copy.deepcopy(original)
        unlearned = get_method(name).run(model, data, mask, stress_config(name, freeze_bn=freeze_bn))
        parameters = dict(unlearned.named_parameters())
        if get_method(name).uses_mask:  # msg trains whatever a mask says (declared)
            assert all(parameters[parameter_name].grad is None for parameter_name in frozen)
        assert any(parameter.grad is not None for parameter in parameters.values())
        buffers_before, buffers_after = dict(original.named_buffers()), dict(unlearned.named_buffers())
        results[freeze_bn] = all(torch.equal(buffers_before[key], buffers_after[key]) for key in buffers_before)
    assert results == {True: True, False: False}  # without --freeze-bn the statistics do update


def test_unknown_options_and_methods_are_user_errors():
    with pytest.raises(UserError, match="has no option 'freeze_bn'"):
        method_config("retrain", {"freeze_bn": True})
    with pytest.raises(UserError, match="beta"):
        method_config("neggrad+", {"beta": "high"})
    with pytest.raises(UserError, match="choose one of: finetune"):
        get_method("forget-everything")


@pytest.mark.parametrize("name, settings", [
    ("neggrad", {"lr": 0.005}),
    ("neggrad+", {"lr": 0.02}),
    ("random-label", {"epochs": 3}),
    ("rft", {"lr": 0.05, "epochs": 5}),
])
def test_forgetting_methods_drive_forget_accuracy_down(models, name, settings):
    original, data = models["mlp"]
    forget_before, _ = forget_test_retain(original, data)
    assert forget_before > 85  # the original knows the forget class
    mask = {name_: torch.ones_like(p, dtype=torch.bool) for name_, p in original.named_parameters()}
    first = next(iter(mask))
    mask[first][16:] = False  # rft: reset half of the first layer's neurons (the other methods: most parameters)
    unlearned = get_method(name).run(copy.deepcopy(original), data, mask, method_config(name, settings))
    forget_after, kept_test = forget_test_retain(unlearned, data)
    assert forget_after < 30, f"{name}: forget accuracy {forget_after:.1f}%"
    assert kept_test > 60, f"{name}: test accuracy on kept classes {kept_test:.1f}%"


def test_finetune_keeps_test_accuracy(models):
    original, data = models["mlp"]
    _, kept_before = forget_test_retain(original, data)
    unlearned = get_method("finetune").run(copy.deepcopy(original), data, None, method_config("finetune", {"epochs": 3}))
    _, kept_after = forget_test_retain(unlearned, data)
    assert kept_after > kept_before - 3


def test_l1_sparse_shrinks_the_l1_norm_more_than_finetune(models):
    original, data = models["mlp"]
    norms = {}
    for name in ("finetune", "l1-sparse"):
        settings = {"epochs": 2, **({"gamma": 0.05} if name == "l1-sparse" else {})}
        unlearned = get_method(name).run(copy.deepcopy(original), data, None, method_config(name, settings))
        norms[name] = sum(float(p.detach().abs().sum()) for p in unlearned.parameters())
    assert norms["l1-sparse"] < 0.9 * norms["finetune"]


def test_random_labels_are_always_wrong_and_seeded():
    labels = torch.arange(10).repeat(200)
    relabelled = wrong_labels(labels, 10, seed=1)
    assert not bool((relabelled == labels).any())
    assert int(relabelled.min()) == 0 and int(relabelled.max()) == 9
    counts = torch.bincount((relabelled - labels) % 10, minlength=10)
    assert counts[0] == 0 and int(counts[1:].min()) > 150  # each of the 9 shifts ~ 2000/9 times
    assert torch.equal(relabelled, wrong_labels(labels, 10, seed=1))
    assert not torch.equal(relabelled, wrong_labels(labels, 10, seed=2))


def test_rft_reset_takes_masked_entries_from_a_seeded_fresh_initialization(models):
    original, data = models["cnn"]
    mask = random_mask(original, seed=3)
    model = copy.deepcopy(original)
    reset_masked(model, data, mask, seed=7)
    fresh = dict(fresh_initialization(data, seed=7).named_parameters())
    again = dict(fresh_initialization(data, seed=7).named_parameters())
    other = dict(fresh_initialization(data, seed=8).named_parameters())
    before = dict(original.named_parameters())
    for name, parameter in model.named_parameters():
        selected = mask[name]
        assert torch.equal(parameter[selected], fresh[name][selected])
        assert torch.equal(parameter[~selected], before[name][~selected])
        assert torch.equal(fresh[name], again[name])
    conv = next(name for name in fresh if fresh[name].ndim == 4)
    assert not torch.equal(fresh[conv], other[conv]) and not torch.equal(fresh[conv], before[conv])


def test_retrain_equals_training_on_the_retain_set(digits):
    factory = lambda: create_model("mlp", 10, (1, 8, 8), width=16)  # noqa: E731
    forget = torch.arange(0, 200, 3)
    data = UnlearnData.split(digits, forget, new_model=factory, training_config={"epochs": 2, "lr": 0.05})
    cfg = method_config("retrain", {"seed": 4})
    retrained = get_method("retrain").run(factory(), data, None, cfg)
    assert (cfg.epochs, cfg.lr) == (2, 0.05)  # the parent's recipe
    seed_everything(4)
    expected = factory()
    train_classifier(expected, digits, data.retain, LoopSettings(epochs=2, lr=0.05), 128, 4, torch.device("cpu"))
    assert all(torch.equal(a, b) for a, b in zip(retrained.state_dict().values(), expected.state_dict().values()))


def squared_gradient_mean(model, inputs, labels, batch_size):
    """Independent reference: mean over batches of the squared batch-mean gradient, via .backward()."""
    model.eval()
    total = {name: torch.zeros_like(p) for name, p in model.named_parameters()}
    batches = 0
    for start in range(0, len(labels), batch_size):
        model.zero_grad()
        nn.functional.cross_entropy(model(inputs[start:start + batch_size]), labels[start:start + batch_size]).backward()
        for name, p in model.named_parameters():
            total[name] += p.grad ** 2
        batches += 1
    model.zero_grad()
    return {name: value / batches for name, value in total.items()}


@pytest.mark.parametrize("use_mask", [False, True])
def test_ssd_dampens_exactly_the_parameters_far_more_important_to_the_forget_set(models, use_mask):
    original, data = models["mlp"]
    alpha, lam = 2.0, 1.0
    reference = copy.deepcopy(original)
    inputs, labels = data.dataset.train_inputs, data.dataset.train_labels
    forget_importance = squared_gradient_mean(reference, inputs[data.forget], labels[data.forget], 128)
    train_importance = squared_gradient_mean(reference, inputs, labels, 128)
    mask = random_mask(original, seed=5) if use_mask else None
    cfg = method_config("ssd", {"selection_weight": alpha, "dampening_constant": lam})
    unlearned = get_method("ssd").run(copy.deepcopy(original), data, mask, cfg)
    before = dict(original.named_parameters())
    total_changed = 0
    for name, parameter in unlearned.named_parameters():
        old, new = before[name].detach(), parameter.detach()
        forget, train = forget_importance[name], train_importance[name]
        factor = (lam * train / forget).clamp(max=1)
        expected_changed = (forget > alpha * train) & (factor < 1) & (old != 0)
        if mask is not None:
            expected_changed &= mask[name]
        assert torch.equal(new != old, expected_changed), name
        torch.testing.assert_close(new[expected_changed], (old * factor)[expected_changed])
        total_changed += int(expected_changed.sum())
    assert total_changed > 0


def test_iu_step_equals_the_explicit_damped_fisher_solve(digits):
    """A linear model on 8×8 digits is small enough to form H = λI + (1/N)·Σ ggᵀ and solve directly."""
    subset = create_dataset("digits", train_subset=300)
    factory = lambda: create_model("mlp", 10, (1, 8, 8), depth=0)  # noqa: E731  (Flatten + Linear: 650 parameters)
    seed_everything(0)
    model = factory()
    train_classifier(model, subset, None, LoopSettings(epochs=5, lr=0.1), 64, 0, torch.device("cpu"))
    data = UnlearnData.split(subset, torch.nonzero(subset.train_labels == FORGET_CLASS).flatten(), new_model=factory)
    cfg = IUConfig(alpha=0.5, damping=0.05, num_samples=len(data.retain))
    unlearned = get_method("iu").run(copy.deepcopy(model), data, None, cfg)

    reference = copy.deepcopy(model).double().eval()
    parameters = list(reference.parameters())
    inputs, labels = subset.train_inputs.double(), subset.train_labels

    def gradient(indices):
        loss = nn.functional.cross_entropy(reference(inputs[indices]), labels[indices])
        return torch.cat([g.flatten() for g in torch.autograd.grad(loss, parameters)])

    n_forget, n_retain = len(data.forget), len(data.retain)
    v = n_forget / (n_forget + n_retain) * (gradient(data.forget) - gradient(data.retain))
    per_example = torch.stack([gradient(torch.tensor([i])) for i in data.retain.tolist()])  # [N, P]
    hessian = cfg.damping * torch.eye(v.numel(), dtype=torch.float64) + per_example.T @ per_example / n_retain
    expected_step = cfg.alpha * torch.linalg.solve(hessian, v)
    step = torch.cat([(a - b).detach().flatten() for a, b in zip(unlearned.parameters(), model.parameters())]).double()
    torch.testing.assert_close(step, expected_step, rtol=2e-3, atol=1e-5)
    # the sign: a step up the forget loss
    forget_loss = lambda m: float(nn.functional.cross_entropy(m(subset.train_inputs[data.forget]), labels[data.forget]))  # noqa: E731
    with torch.no_grad():
        assert forget_loss(unlearned) > forget_loss(model) + 1


def test_iu_refuses_more_memory_than_it_may_use(models, monkeypatch):
    original, data = models["mlp"]
    monkeypatch.setattr("unlearn_cli.methods.iu.MEMORY_LIMIT_BYTES", 1000)
    with pytest.raises(UserError, match="num_samples"):
        get_method("iu").run(copy.deepcopy(original), data, None, method_config("iu", {"num_samples": 8}))


@pytest.mark.parametrize("name", list_methods())
def test_every_method_runs_from_its_defaults(models, name):
    """Its defaults are a whole configuration: cut to one optimizer step, the method runs, changes only what its mask
    (and rft's head) allow, and runs the same again (the default seed)."""
    original, data = models["cnn"]
    method = get_method(name)
    cfg = method_config(name, {"max_steps": 1} if "max_steps" in method_options(name) else {})
    mask = random_mask(original) if method.uses_mask else None
    first, second = (dict(method.run(copy.deepcopy(original), data, mask, copy.deepcopy(cfg)).named_parameters())
                     for _ in range(2))
    assert all(torch.equal(first[key], second[key]) for key in first), f"{name} is not reproducible"
    assert all(bool(parameter.isfinite().all()) for parameter in first.values())
    before = dict(original.named_parameters())
    if mask is None:  # retrain: a fresh model, trained from scratch
        assert not any(torch.equal(before[key], first[key]) for key in first)
        return
    head = set(classifier_head_names(original)) if getattr(cfg, "train_head", False) else set()
    changed_inside = 0
    for key, selected in mask.items():
        if key not in head:
            assert torch.equal(before[key][~selected], first[key][~selected]), f"{name} changed {key} outside the mask"
        changed_inside += int((before[key][selected] != first[key][selected]).sum())
    assert changed_inside > 0, f"{name} changed nothing inside the mask"


def help_defaults() -> dict[str, str]:
    """What `apply --help` says each option defaults to: {option: e.g. "128", "on", "per method, e.g. rft 0.1"}."""
    command = typer.main.get_command(app).commands["apply"]
    return {parameter.name: match.group(1) for parameter in command.params
            if (match := re.search(r"\(default: ([^)]*)\)", parameter.help or ""))}


@pytest.mark.parametrize("name", list_methods())
def test_apply_help_states_each_method_s_defaults(name):
    cfg = method_config(name, {})
    if name == "retrain":  # an option it leaves unset is the parent's recipe, else the recipe defaults
        cfg = resolved_recipe(cfg, {}, retain_size=100)
    checked, elsewhere = [], []
    for option, stated in help_defaults().items():
        per_method = re.fullmatch(r"per method, e\.g\. (\S+) (\S+)", stated)
        if not hasattr(cfg, option) or (per_method and per_method.group(1) != name):
            elsewhere += [option] if per_method and hasattr(cfg, option) else []
            continue
        stated = per_method.group(2) if per_method else stated
        value = getattr(cfg, option)
        assert value == ({"on": True, "off": False}[stated] if isinstance(value, bool) else type(value)(stated)), (
            f"{name}: {option} defaults to {value!r}, `apply --help` says {stated}")
        checked.append(option)
    assert {"seed", "batch_size"} <= set(checked + elsewhere)  # every method has these
