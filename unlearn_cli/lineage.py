"""Which checkpoints, forget sets and masks may be used together: every lineage rule, in one vocabulary.

Each file records where it came from: a checkpoint its `Provenance` (the parent it was unlearned from, the
forget set it was trained without or unlearned on, the manipulation its training data carried), a mask its
`MaskRecord` (the checkpoint and forget set it was computed for). These functions compare those records and
refuse, with a one-line UserError naming both files and the fix, a combination that would unlearn or measure
something other than what the command says.

Usage:
    check_fits_data(checkpoint, reference, data, "the model")
    data = dataset_for(checkpoint, data_root)
    data, forget_set = data_as_trained(data, forget_set, [checkpoint], unlearning=True)
    check_mask(mask_file, parent.sha256, forget_set.sha256, allow_other_model=False, allow_other_forget_set=False)
    matches = check_oracle(oracle, forget_set, allow_mismatch=False)    # True, or a UserError
    check_not_excluded_and_manipulated(checkpoint, forget_set)    # train --exclude F --manipulate F: neither role
    derived = check_parent(checkpoint, parent)
    check_calibratable(unlearned, parent, forget_set)
    check_audit_pools({"unlearned": [...], "retrained": [...]}, forget_set, reference, data)
"""

from __future__ import annotations

from unlearn_cli.data import ImageData, create_dataset
from unlearn_cli.errors import UserError
from unlearn_cli.io.checkpoint import Checkpoint
from unlearn_cli.io.forget import ForgetSet
from unlearn_cli.io.mask import MaskFile, MaskRecord


def _short(sha256: str) -> str:
    return f"{sha256[:12]}…"


# --- a checkpoint and the data -----------------------------------------------------------------------------------

def dataset_for(checkpoint, data_root: str | None) -> ImageData:
    """Rebuild the dataset a checkpoint was trained on (its name and options are in the metadata)."""
    kwargs = dict(checkpoint.dataset_kwargs)
    root = data_root or checkpoint.data_root
    if root:
        kwargs["data_root"] = root
    return create_dataset(checkpoint.dataset, where=f"{checkpoint.source}: dataset option", **kwargs)


def check_fits_data(checkpoint: Checkpoint, reference: Checkpoint, data: ImageData, role: str) -> None:
    """The checkpoint must be trained on the reference's dataset and match its classes and input shape."""
    if checkpoint.describe_data() != reference.describe_data():
        raise UserError(f"{checkpoint.source}: {role} was trained on {checkpoint.describe_data()}, but "
                        f"{reference.source} on {reference.describe_data()}; compare models of the same dataset")
    if checkpoint.num_classes != data.num_classes:
        raise UserError(f"{checkpoint.source}: {role} has {checkpoint.num_classes} classes but dataset {data.name} has "
                        f"{data.num_classes}; evaluate it on the data it was trained for")
    if tuple(checkpoint.input_shape) != tuple(data.input_shape):
        raise UserError(f"{checkpoint.source}: {role} takes inputs of shape {list(checkpoint.input_shape)} but dataset "
                        f"{data.name} has {list(data.input_shape)}; evaluate it on the data it was trained for")


def check_trained_on(checkpoint: Checkpoint, forget_set: ForgetSet, *, unlearning: bool) -> None:
    """Refuse a checkpoint trained on data manipulated by another forget set than `forget_set` (or by none when it
    carries one and `unlearning`): see `data_as_trained`."""
    manipulation = forget_set.manipulation
    trained_on = checkpoint.provenance.manipulated_sha256
    check_not_excluded_and_manipulated(checkpoint, forget_set)
    if trained_on is not None and (manipulation is None or manipulation.sha256 != trained_on):
        raise UserError(f"{checkpoint.source}: was trained on data manipulated by another forget set "
                        f"(manipulated_sha256 {_short(trained_on)}); pass the forget set it was trained with "
                        f"(`train --manipulate FILE`) as --forget")
    if manipulation is not None and trained_on is None and unlearning:
        raise UserError(f"{forget_set.source}: describes {manipulation.describe()}, but {checkpoint.source} was "
                        f"trained on clean data; train the model with `unlearn train --manipulate "
                        f"{forget_set.source}`, or use a forget set without a manipulation")


def check_not_excluded_and_manipulated(checkpoint: Checkpoint, forget_set: ForgetSet) -> None:
    """Refuse a checkpoint trained with `--exclude F --manipulate F`: its manipulated examples were left out, so it is
    neither the oracle of F (trained on clean data) nor a model that learned F's manipulation."""
    provenance, manipulation = checkpoint.provenance, forget_set.manipulation
    if (manipulation is not None and provenance.excluded_sha256 == forget_set.sha256
            and provenance.manipulated_sha256 == manipulation.sha256):
        raise UserError(f"{checkpoint.source}: was trained with --exclude and --manipulate of the same forget set "
                        f"{forget_set.source}, so it is neither its oracle nor a model that learned its "
                        f"{manipulation.kind}; train the oracle with `unlearn train --exclude {forget_set.source}` "
                        f"alone and the original with `--manipulate {forget_set.source}` alone")


def data_as_trained(data: ImageData, forget_set: ForgetSet, checkpoints, *, unlearning: bool):
    """(the training set as `checkpoints` were trained on it, the forget set to use) -> (ImageData, ForgetSet).

    When the forget set carries a manipulation (`unlearn split --kind mislabel|poison`), the examples are seen as
    a model trained with `train --manipulate` saw them: wrong labels, stamped patches. A checkpoint trained on
    manipulated data is refused with any other forget set; `unlearning` (localize, apply, tune) also refuses a
    checkpoint trained on clean data and takes the known part of the forget set, all that an unlearner knows.
    Evaluation (`unlearning` False) measures the whole manipulated set, on clean models too (the oracle).
    """
    for checkpoint in checkpoints:
        check_trained_on(checkpoint, forget_set, unlearning=unlearning)
    if forget_set.manipulation is None:
        return data, forget_set
    return (forget_set.manipulation.apply(data, forget_set.source),
            forget_set.seen() if unlearning else forget_set)


# --- a mask and the checkpoint and forget set it is applied with ---------------------------------------------------

def _other(recorded: str | None, expected: str) -> str | None:
    """The hash a mask records when it is not `expected` ("unrecorded" when it records none); None when it is."""
    return None if recorded == expected else recorded or "unrecorded"


def _recorded(sha256: str | None) -> str:
    return "?" if sha256 is None else sha256


def check_mask(mask_file: MaskFile, model_sha256: str, forget_sha256: str, *, allow_other_model: bool,
               allow_other_forget_set: bool) -> None:
    """A mask computed on another checkpoint, or for another forget set, is refused unless that is allowed."""
    record, source = mask_file.record, mask_file.source
    if _other(record.model_sha256, model_sha256) and not allow_other_model:
        raise UserError(f"{source}: mask was computed on another checkpoint (model_sha256 "
                        f"{_short(_recorded(record.model_sha256))}, this one {_short(model_sha256)}); recompute it, "
                        f"or pass --allow-other-model if that is deliberate")
    if _other(record.forget_sha256, forget_sha256) and not allow_other_forget_set:
        raise UserError(f"{source}: mask was computed for another forget set (forget_sha256 "
                        f"{_short(_recorded(record.forget_sha256))}, this one {_short(forget_sha256)}); recompute it "
                        f"with `unlearn localize --forget` on this forget set, or pass --allow-mismatch if that is "
                        f"deliberate")


def mask_overrides(record: MaskRecord, model_sha256: str, forget_sha256: str) -> dict[str, str | None]:
    """The `Provenance` fields of what --allow-other-model and --allow-mismatch let through: the checkpoint and
    forget set the mask was computed for, where they are not these (None where they are)."""
    return {"mask_model_sha256": _other(record.model_sha256, model_sha256),
            "mask_forget_sha256": _other(record.forget_sha256, forget_sha256)}


# --- oracles and parents -----------------------------------------------------------------------------------------

def _trained_instead(checkpoint: Checkpoint, forget: ForgetSet) -> str | None:
    """How a checkpoint was trained when it was not trained without exactly `forget` (what follows "was trained");
    None when it was."""
    excluded = checkpoint.provenance.excluded_sha256
    if excluded == forget.sha256:
        return None
    if excluded is None:
        return "on the whole training set"
    return f"without another forget set (excluded_sha256 {_short(excluded)}, {forget.source} is {_short(forget.sha256)})"


def check_oracle(oracle: Checkpoint, forget: ForgetSet, allow_mismatch: bool) -> bool:
    """True when the oracle was trained without exactly this forget set; otherwise an error (or False if allowed)."""
    check_not_excluded_and_manipulated(oracle, forget)
    trained = _trained_instead(oracle, forget)
    if trained is None:
        return True
    if allow_mismatch:
        return False
    raise UserError(f"{oracle.source}: the oracle was trained {trained}; train it with `unlearn train --exclude "
                    f"{forget.source}`, or pass --allow-mismatch")


def check_parent(checkpoint: Checkpoint, parent: Checkpoint) -> bool:
    """True when `checkpoint` is `parent` or derived from it; False when it records no parent; else an error."""
    recorded = checkpoint.provenance.parent_sha256
    if checkpoint.sha256 == parent.sha256 or recorded == parent.sha256:
        return True
    if recorded is None:
        return False
    raise UserError(f"{checkpoint.source}: was unlearned from another checkpoint (parent_sha256 {_short(recorded)}, "
                    f"{parent.source} is {_short(parent.sha256)}); pass its parent with --parent")


def check_calibratable(checkpoint: Checkpoint, parent: Checkpoint, forget_set: ForgetSet) -> None:
    """`unlearn calibrate`: the checkpoint was unlearned from `parent` on `forget_set`, and not calibrated yet."""
    recorded = checkpoint.provenance.parent_sha256
    if recorded != parent.sha256:
        was = "records no parent" if recorded is None else f"was unlearned from another checkpoint ({_short(recorded)})"
        raise UserError(f"{checkpoint.source}: {was}, not from {parent.source} ({_short(parent.sha256)}); pass the "
                        f"checkpoint `unlearn apply` started from as --parent")
    if checkpoint.provenance.forget_sha256 != forget_set.sha256:
        raise UserError(f"{checkpoint.source}: was unlearned on another forget set than {forget_set.source}; pass "
                        f"the forget set given to `unlearn apply` as --forget")
    if checkpoint.provenance.calibration_scale is not None:
        raise UserError(f"{checkpoint.source}: is calibrated already (scale {checkpoint.provenance.calibration_scale:g}); "
                        f"calibrate the file `unlearn apply` wrote without --calibrate")


# --- the pools of `audit` ----------------------------------------------------------------------------------------

def check_audit_pools(pools: dict[str, list[Checkpoint]], forget_set: ForgetSet, reference: Checkpoint,
                      data: ImageData) -> None:
    """Every model fits the data and architecture; the retrained ones (and the ceiling's) excluded exactly the
    forget set; the unlearned ones were unlearned (from the originals, when given) and the originals trained on
    it; the ceiling is as large as the unlearned pool and shares no seed with the retrained one."""
    for name, checkpoints in pools.items():
        for checkpoint in checkpoints:
            check_fits_data(checkpoint, reference, data, f"a model of the {name} pool")
            _check_architecture(checkpoint, reference)
        _check_one_recipe(name, checkpoints)
    for name in ("retrained", "ceiling"):
        for checkpoint in pools.get(name, []):
            trained = _trained_instead(checkpoint, forget_set)
            if trained is not None:
                raise UserError(f"{checkpoint.source}: was trained {trained}; --{name} takes models trained without "
                                f"exactly {forget_set.source} (`unlearn train --exclude {forget_set.source}`)")
    if "ceiling" in pools:
        _check_ceiling(pools["ceiling"], pools["retrained"], len(pools["unlearned"]))
    originals = pools.get("original", [])
    for checkpoint in originals:
        _check_original(checkpoint)
    for checkpoint in pools["unlearned"]:
        _check_unlearned(checkpoint, forget_set, originals)


# what may differ between the models of one pool: the seed, the paths each run read and wrote, where it ran
RUN_KEYS = frozenset({"seed", "model", "forget", "mask", "exclude", "manipulate", "output", "data_root", "device",
                      "threads", "amp", "channels_last", "compile", "stacked", "record_memorization", "allow_mismatch",
                      "allow_other_model"})


def recipe(checkpoint: Checkpoint) -> dict:
    """What a pool's models must share: the method, the mask's strategy and budget, whether it was calibrated, and
    every recorded setting but RUN_KEYS."""
    provenance = checkpoint.provenance
    return {"method": provenance.method, "strategy": provenance.mask_strategy, "budget": provenance.mask_budget,
            "calibrated": provenance.calibration_scale is not None,
            **{key: value for key, value in sorted(checkpoint.config.items()) if key not in RUN_KEYS}}


def _check_one_recipe(name: str, checkpoints: list[Checkpoint]) -> None:
    """The models of a pool differ only by seed: one recipe, or the audit compares a mixture."""
    first = recipe(checkpoints[0])
    for checkpoint in checkpoints[1:]:
        other = recipe(checkpoint)
        differ = [key for key in {**first, **other} if first.get(key) != other.get(key)]
        if differ:
            key = differ[0]
            raise UserError(f"{checkpoint.source}: {key} {other.get(key)!r} differs from {checkpoints[0].source}'s "
                            f"{first.get(key)!r}; the --{name} pool must hold one recipe run with several seeds, so "
                            f"audit each setting as a pool of its own")


def _check_architecture(checkpoint: Checkpoint, reference: Checkpoint) -> None:
    if (checkpoint.arch, checkpoint.arch_kwargs) != (reference.arch, reference.arch_kwargs):
        raise UserError(f"{checkpoint.source}: architecture {checkpoint.arch} {checkpoint.arch_kwargs} differs "
                        f"from {reference.source}'s {reference.arch} {reference.arch_kwargs}; audit pools of "
                        f"one architecture")


def _check_ceiling(ceiling: list[Checkpoint], retrained: list[Checkpoint], unlearned: int) -> None:
    """The ceiling is scored on the audited pool's ε scale (as many models) and must be independent of the
    retrained pool (no seed in common)."""
    if len(ceiling) != unlearned:
        raise UserError(f"--ceiling: {len(ceiling)} models, --unlearned {unlearned}; the ceiling is scored on the "
                        f"audited pool's ε scale, so give it as many models as --unlearned")
    retrained_seeds = {c.provenance.seed: c.source for c in retrained if c.provenance.seed is not None}
    for checkpoint in ceiling:
        if checkpoint.provenance.seed in retrained_seeds:
            raise UserError(f"{checkpoint.source}: trained with seed {checkpoint.provenance.seed}, as "
                            f"{retrained_seeds[checkpoint.provenance.seed]} of --retrained is; an independent "
                            f"ceiling needs other seeds (e.g. train it with --seeds 1000-{999 + len(ceiling)})")


def _check_original(checkpoint: Checkpoint) -> None:
    provenance = checkpoint.provenance
    if provenance.method is not None or provenance.excluded_sha256 is not None:
        raise UserError(f"{checkpoint.source}: --original takes models trained on the whole training set, but "
                        f"this one was {'unlearned with ' + provenance.method if provenance.method else 'trained without a forget set'}; "
                        f"give the checkpoints written by `unlearn train` without --exclude")


def _check_unlearned(checkpoint: Checkpoint, forget_set: ForgetSet, originals: list[Checkpoint]) -> None:
    provenance = checkpoint.provenance
    # `apply --method retrain` records a method and a parent: a pipeline (retraining, perhaps at a fraction of
    # the cost) audited like any other; `train --exclude` records neither, and is an oracle
    if provenance.excluded_sha256 == forget_set.sha256 and provenance.method is None:
        raise UserError(f"{checkpoint.source}: was trained without the forget set (train --exclude); "
                        f"it belongs in --retrained, not --unlearned")
    if provenance.method is None or provenance.parent_sha256 is None:
        raise UserError(f"{checkpoint.source}: records no unlearning (no method and parent in its metadata); "
                        f"--unlearned takes checkpoints written by `unlearn apply`")
    # None: written before it was recorded; a manipulated forget set's known part is what apply unlearned
    if provenance.forget_sha256 not in (None, forget_set.sha256, forget_set.seen().sha256):
        raise UserError(f"{checkpoint.source}: was unlearned on another forget set (forget_sha256 "
                        f"{_short(provenance.forget_sha256)}, {forget_set.source} is {_short(forget_set.sha256)}); "
                        f"audit it with the forget set it was unlearned on")
    if originals and provenance.parent_sha256 not in {original.sha256 for original in originals}:
        raise UserError(f"{checkpoint.source}: was unlearned from {_short(provenance.parent_sha256)}, which is not "
                        f"in --original; give the originals the unlearned models started from")
