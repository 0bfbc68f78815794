"""Manipulated training data for corrective unlearning: mislabeled examples, or a poison (a trigger patch and a
target label), as Goel et al. 2024 ("Corrective Machine Unlearning", TMLR) benchmark them.

A `Manipulation` names training examples and what was done to them. `apply` gives the training set as a model
trained on the manipulated data saw it (labels replaced, patches stamped); `view_unseen` manipulates test
examples by the same rule, which is what an attack success rate and the oracle-free reference need.

    mislabel  each example gets a wrong label: `to` random (uniform over the other classes), next (y + 1 mod C)
              or a fixed class; the new label of every example is recorded
    poison    each example (never of the target class) gets a `patch`×`patch` square in a `corner`, filled with the
              training images' largest (`max`) or smallest (`min`) value per channel, and the `target` label

Usage:
    manipulation = draw_manipulation(labels, "poison", fraction=0.01, classes=None, seed=0, target=0)
    data = manipulation.apply(data)                         # a copy; `data` as read is left unchanged
    triggered = manipulation.view_unseen(data, test_positions, seed=0)   # its test set: the trigger stamped
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass

import torch
from torch.utils.data import Dataset

from unlearn_cli.data.base import ImageData
from unlearn_cli.data.splits import check_classes
from unlearn_cli.errors import UserError
from unlearn_cli.seeding import derive_seed

KINDS = ("mislabel", "poison")
CORNERS = ("br", "bl", "tr", "tl")  # bottom/top, right/left
VALUES = ("max", "min")
RULES = ("random", "next")  # mislabel `to`, besides a class number


@dataclass(frozen=True)
class Manipulation:
    kind: str  # mislabel | poison
    indices: torch.Tensor  # int64 [K], sorted training positions
    labels: torch.Tensor  # int64 [K]: the label each was trained with
    to: str | int | None = None  # mislabel: random | next | a class
    target: int | None = None  # poison: the label the trigger maps to
    patch: int = 3  # poison: side of the square, in pixels
    corner: str = "br"
    value: str = "max"  # max | min: the training images' extreme per channel

    def describe(self) -> str:
        if self.kind == "mislabel":
            return f"mislabel {len(self.indices)} examples (to {self.to})"
        return f"poison {len(self.indices)} examples ({self.patch}×{self.patch} {self.value} patch {self.corner}, target {self.target})"

    # --- the record ----------------------------------------------------------------------------------
    def to_json(self) -> dict:
        """The `manipulation` object of a forget-set file (docs/files.md); the indices are the file's own."""
        if self.kind == "mislabel":
            return {"kind": "mislabel", "to": self.to, "labels": [int(label) for label in self.labels]}
        return {"kind": "poison", "target": self.target, "patch": self.patch, "corner": self.corner, "value": self.value}

    @property
    def sha256(self) -> str:
        """The identity of the manipulated data: which examples, and what was done to them."""
        record = {"indices": [int(index) for index in self.indices], **self.to_json()}
        return hashlib.sha256(json.dumps(record, sort_keys=True, separators=(",", ":")).encode()).hexdigest()

    # --- checks against a dataset ------------------------------------------------------------------
    def check(self, data: ImageData, source: str) -> None:
        """Refuse a manipulation that does not fit `data`: labels out of range, a patch larger than the images."""
        if len(self.indices) and int(self.indices.max()) >= data.num_train:
            raise UserError(f"{source}: manipulated index {int(self.indices.max())} is out of range for a training set "
                            f"of {data.num_train} examples")
        if len(self.labels) and not (0 <= int(self.labels.min()) and int(self.labels.max()) < data.num_classes):
            bad = int(self.labels.max()) if int(self.labels.max()) >= data.num_classes else int(self.labels.min())
            raise UserError(f"{source}: manipulated label {bad} is out of range for {data.name}'s {data.num_classes} "
                            f"classes (0…{data.num_classes - 1}); re-create the file with `unlearn split`")
        if isinstance(self.to, int) and not 0 <= self.to < data.num_classes:
            raise UserError(f"{source}: mislabel target class {self.to} is out of range for {data.name}'s "
                            f"{data.num_classes} classes; re-create the file with `unlearn split`")
        if self.kind == "poison":
            _, height, width = data.input_shape
            if self.patch > min(height, width):
                raise UserError(f"{source}: a {self.patch}×{self.patch} patch does not fit {data.name}'s "
                                f"{height}×{width} images; re-create the file with a smaller --patch")
            if int((data.train_labels[self.indices] == self.target).sum()):
                raise UserError(f"{source}: poisoned examples must come from classes other than the target "
                                f"{self.target}, but some are of that class; re-create the file with `unlearn split`")

    # --- applying it ---------------------------------------------------------------------------------
    def box(self, height: int, width: int) -> tuple[slice, slice]:
        """Rows and columns of the trigger patch in a height×width image."""
        rows = slice(height - self.patch, height) if self.corner[0] == "b" else slice(0, self.patch)
        columns = slice(width - self.patch, width) if self.corner[1] == "r" else slice(0, self.patch)
        return rows, columns

    def stamp(self, images: torch.Tensor, fill: torch.Tensor) -> torch.Tensor:
        """A copy of images [N, C, H, W] (or one [C, H, W]) with the patch filled with `fill` [C] per channel."""
        stamped = images.clone()
        rows, columns = self.box(images.shape[-2], images.shape[-1])
        stamped[..., rows, columns] = fill.to(images.dtype).reshape(-1, 1, 1)
        return stamped

    def fill(self, data: ImageData) -> torch.Tensor:
        """The patch's value per channel [C]: the training images' extreme (`max` or `min`) in that channel."""
        low, high = data.pixel_range()
        return high if self.value == "max" else low

    def apply(self, data: ImageData, source: str = "manipulation") -> ImageData:
        """A copy of `data` whose training split is manipulated: labels replaced, and for poison patches stamped."""
        self.check(data, source)
        return self._manipulated(data, "train", self.indices, self.labels)

    def view_unseen(self, data: ImageData, positions: torch.Tensor, seed: int) -> ImageData:
        """A copy of `data` whose test set is the test examples at `positions`, manipulated by this rule (poison:
        only those not of the target class are kept; a random relabelling is seeded). Works for in-memory and
        streamed test sets."""
        positions = torch.as_tensor(positions, dtype=torch.long)
        if self.kind == "poison":
            positions = positions[data.test_labels[positions] != self.target]
        subset = data.test_subset(positions)
        if self.kind == "mislabel":
            labels = relabel(subset.test_labels, self.to, data.num_classes, torch.Generator().manual_seed(seed))
        else:
            labels = torch.full_like(subset.test_labels, self.target)
        return self._manipulated(subset, "test", torch.arange(len(labels)), labels)

    def _manipulated(self, data: ImageData, split: str, positions: torch.Tensor, labels: torch.Tensor) -> ImageData:
        """A copy of `data` whose examples at `positions` of `split` get `labels` (and, for poison, the patch)."""
        new_labels = data.labels(split).clone()
        new_labels[positions] = labels
        changes = {f"{split}_labels": new_labels}
        poison = self.kind == "poison"
        fill = self.fill(data) if poison else None
        inputs = getattr(data, f"{split}_inputs")
        if poison and inputs is not None:
            inputs, where = inputs.clone(), positions.to(inputs.device)
            inputs[where] = self.stamp(inputs[where], fill.to(inputs.device))
            changes[f"{split}_inputs"] = inputs
        if split in data.streams:
            table = dict(zip(positions.tolist(), labels.tolist()))
            changes["streams"] = {**data.streams, split: _ManipulatedStream(data.streams[split], table,
                                                                          self if poison else None, fill)}
        return dataclasses.replace(data, **changes)


class _ManipulatedStream(Dataset):
    """A streamed dataset with some examples' labels replaced (and, for poison, their images stamped)."""

    def __init__(self, base: Dataset, labels: dict[int, int], poison: Manipulation | None, fill: torch.Tensor | None):
        self.base, self.labels, self.poison, self.fill = base, labels, poison, fill

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int):
        image, label = self.base[index]
        if index in self.labels:
            label = self.labels[index]
            if self.poison is not None:
                image = self.poison.stamp(image, self.fill)
        return image, label


def relabel(labels: torch.Tensor, to: str | int, num_classes: int, generator: torch.Generator) -> torch.Tensor:
    """Wrong labels for `labels`: random (uniform over the other classes, drawn from `generator`), next, or a class."""
    if to == "random":
        return (labels + torch.randint(1, num_classes, labels.shape, generator=generator)) % num_classes
    if to == "next":
        return (labels + 1) % num_classes
    return torch.full_like(labels, int(to))


def parse_to(text: str | int | None, num_classes: int | None = None) -> str | int:
    """`--to`: random, next or a class number."""
    if text is None:
        return "random"
    if isinstance(text, int) and not isinstance(text, bool):
        value = text
    elif isinstance(text, str) and text.strip() in RULES:
        return text.strip()
    elif isinstance(text, str) and text.strip().isdigit():
        value = int(text)
    else:
        raise UserError(f"--to {text!r}: give random, next or a class number, e.g. --to 3")
    if num_classes is not None and not 0 <= value < num_classes:
        raise UserError(f"--to {value}: the dataset has classes 0..{num_classes - 1}")
    return value


def draw_manipulation(labels: torch.Tensor, kind: str, fraction: float, classes: list[int] | None, seed: int, *,
                      to: str | int | None = "random", target: int | None = None, patch: int = 3,
                      corner: str = "br", value: str = "max", image_size: tuple[int, int] | None = None) -> Manipulation:
    """`fraction` of the training set (from `classes` when given), manipulated; seeded. Poison never draws from
    the target class, and mislabelling to a fixed class never draws from that class."""
    num_train, num_classes = len(labels), int(labels.max()) + 1
    if not 0 < fraction <= 1:
        raise UserError(f"--fraction {fraction}: must be in (0, 1]")
    if classes:
        check_classes(classes, num_classes)
    allowed = torch.ones(num_train, dtype=torch.bool) if not classes else torch.isin(labels, torch.tensor(classes))
    if kind == "poison":
        if target is None:
            raise UserError("--kind poison needs --target CLASS, the label the trigger maps to, e.g. --target 0")
        if not 0 <= target < num_classes:
            raise UserError(f"--target {target}: the dataset has classes 0..{num_classes - 1}")
        if not isinstance(patch, int) or patch < 1:
            raise UserError(f"--patch {patch}: give the side of the square trigger in pixels, at least 1")
        if image_size is not None and patch > min(image_size):
            raise UserError(f"--patch {patch}: a {patch}×{patch} patch does not fit {image_size[0]}×{image_size[1]} "
                            f"images; give at most --patch {min(image_size)}")
        if corner not in CORNERS:
            raise UserError(f"--corner {corner!r}: choose one of {', '.join(CORNERS)} (bottom/top, right/left)")
        if value not in VALUES:
            raise UserError(f"--patch-value {value!r}: choose max or min (the images' extreme per channel)")
        allowed &= labels != target
    elif kind == "mislabel":
        to = parse_to(to, num_classes)
        if isinstance(to, int):
            allowed &= labels != to
    else:
        raise UserError(f"--kind {kind!r}: choose one of {', '.join(KINDS)}")
    pool = torch.nonzero(allowed).flatten()
    count = round(fraction * num_train)
    if count == 0:
        raise UserError(f"--fraction {fraction} of {num_train} examples manipulates nothing; raise --fraction")
    if count > len(pool):
        raise UserError(f"--fraction {fraction} asks for {count} examples but only {len(pool)} can be {kind}ed; "
                        f"lower --fraction")
    generator = torch.Generator().manual_seed(seed)
    indices = pool[torch.randperm(len(pool), generator=generator)[:count]].sort().values
    if kind == "poison":
        return Manipulation("poison", indices, torch.full((count,), target, dtype=torch.long), target=target,
                            patch=patch, corner=corner, value=value)
    return Manipulation("mislabel", indices, relabel(labels[indices], to, num_classes, generator), to=to)


def draw_known(indices: torch.Tensor, share: float, seed: int) -> torch.Tensor:
    """The seeded share of `indices` the unlearner knows about (at least one), sorted."""
    if not 0 < share <= 1:
        raise UserError(f"--known {share}: must be in (0, 1], the share of the manipulated examples that is known")
    if share == 1:
        return indices
    count = max(1, round(share * len(indices)))
    generator = torch.Generator().manual_seed(derive_seed(seed, 1_000_003))  # a stream of its own: the draw above is unchanged
    return indices[torch.randperm(len(indices), generator=generator)[:count]].sort().values
