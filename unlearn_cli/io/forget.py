"""Forget-set files: `unlearn-forget/1` JSON, `unlearn-forget/2` JSON (a forget set that carries a manipulation
of the training data, and the share of it that is known), or a plain list of indices: text, a JSON list or `.npy` (docs/files.md).

Usage:
    data = forget_set_json(indices, dataset="digits", num_train=1437, kind="iid", fraction=0.1, classes=None, seed=0)
    data = forget_set_json(manipulation.indices, ..., kind="poison", manipulation=manipulation, known=known)
    forget = read_forget_set("forget.json", num_train=1437, dataset="digits")
    forget.manipulation, forget.known    # None for a plain forget set
    forget.seen()                        # what localize and apply unlearn: the known part
"""

from __future__ import annotations

import io
import json
import re
import dataclasses
from dataclasses import dataclass

import numpy as np
import torch

from unlearn_cli.data.manipulation import CORNERS, KINDS as MANIPULATIONS, RULES, VALUES, Manipulation
from unlearn_cli.errors import UserError
from unlearn_cli.io.hashing import sha256_indices
from unlearn_cli.limits import INT64_MAX, SCAN_CHUNK, check_values, load_json
from unlearn_cli.streams import read_input, reader

FORMAT = "unlearn-forget/1"
FORMAT_MANIPULATED = "unlearn-forget/2"  # /1 plus `manipulation` and `known`
FORMATS = (FORMAT, FORMAT_MANIPULATED)


@dataclass
class ForgetSet:
    indices: torch.Tensor  # int64 [K], sorted, unique
    sha256: str
    dataset: str | None = None
    source: str = ""
    info: dict | None = None
    manipulation: Manipulation | None = None  # what was done to these examples in training (unlearn-forget/2)
    known: torch.Tensor | None = None  # the part of `indices` the unlearner knows; None: all of it

    def fields(self) -> dict:
        """What a results or audit file records of the forget set: its source, hash, size, kind and, for a
        manipulated one, `manipulation_fields`."""
        return {"source": self.source, "sha256": self.sha256, "size": len(self.indices),
                "kind": (self.info or {}).get("kind", "indices"), **self.manipulation_fields()}

    def manipulation_fields(self) -> dict:
        """What a results or audit file records of a manipulated forget set: the manipulation (its labels left
        out) and the part that was known; {} for a plain forget set."""
        if self.manipulation is None:
            return {}
        record = {key: value for key, value in self.manipulation.to_json().items() if key != "labels"}
        known = self.seen()
        return {"manipulation": {**record, "sha256": self.manipulation.sha256},
                "known": {"size": len(known.indices), "sha256": known.sha256,
                          "share": (self.info or {}).get("known", {}).get("share")}}

    def seen(self) -> "ForgetSet":
        """The forget set an unlearner works with: the known part (the whole set when all of it is known)."""
        if self.known is None or len(self.known) == len(self.indices):
            return self
        return dataclasses.replace(self, indices=self.known, sha256=sha256_indices(self.known), known=None)


def forget_set_json(indices: torch.Tensor, *, dataset: str, num_train: int, kind: str, fraction: float,
                    classes: list[int] | None, seed: int, manipulation: Manipulation | None = None,
                    known: torch.Tensor | None = None, known_share: float = 1.0, memorization: dict | None = None) -> bytes:
    """The file `unlearn split` writes: unlearn-forget/1, or /2 when the set carries a manipulation; `memorization`
    (kind memorization): the tercile it was drawn from and the scores that made the terciles."""
    document = {
        "format": FORMAT if manipulation is None else FORMAT_MANIPULATED, "dataset": dataset, "num_train": num_train,
        "kind": kind, "fraction": fraction, "classes": classes, "seed": seed, "indices": [int(i) for i in indices],
        "sha256": sha256_indices(indices),
    }
    if memorization is not None:
        document["memorization"] = memorization
    if manipulation is not None:
        known = indices if known is None else known
        document["manipulation"] = {**manipulation.to_json(), "sha256": manipulation.sha256}
        document["known"] = {"share": known_share, "indices": [int(i) for i in known], "sha256": sha256_indices(known)}
    return (json.dumps(document, indent=1) + "\n").encode()


def _manipulation(document: dict, indices: torch.Tensor, source: str) -> tuple[Manipulation, torch.Tensor]:
    """The `manipulation` and `known` objects of an unlearn-forget/2 file, checked for shape and type (the dataset
    checks, labels in range and a patch that fits, come when it is applied: `Manipulation.check`)."""
    record, known = document.get("manipulation"), document.get("known")
    if not isinstance(record, dict) or record.get("kind") not in MANIPULATIONS:
        raise UserError(f"{source}: an {FORMAT_MANIPULATED} file needs a 'manipulation' object whose kind is "
                        f"{' or '.join(MANIPULATIONS)}")

    def integer(value, what: str) -> int:
        if not isinstance(value, int) or isinstance(value, bool) or not -INT64_MAX <= value <= INT64_MAX:
            raise UserError(f"{source}: manipulation {what} must be an integer, got {str(value)[:30]!r}")
        return value

    if record["kind"] == "mislabel":
        labels = record.get("labels")
        if not isinstance(labels, list) or len(labels) != len(indices):
            raise UserError(f"{source}: a mislabel manipulation needs 'labels', one per index ({len(indices)})")
        labels = torch.tensor([integer(label, "label") for label in labels], dtype=torch.long)
        to = record.get("to")
        if not (to in RULES or (isinstance(to, int) and not isinstance(to, bool))):
            raise UserError(f"{source}: manipulation 'to' must be random, next or a class number")
        manipulation = Manipulation("mislabel", indices, labels, to=to)
    else:
        target, patch = integer(record.get("target"), "target"), integer(record.get("patch"), "patch")
        if target < 0 or patch < 1:
            raise UserError(f"{source}: manipulation target must be a class (≥ 0) and patch a size (≥ 1)")
        if record.get("corner") not in CORNERS or record.get("value") not in VALUES:
            raise UserError(f"{source}: manipulation corner must be one of {', '.join(CORNERS)} and value max or min")
        manipulation = Manipulation("poison", indices, torch.full((len(indices),), target, dtype=torch.long),
                                    target=target, patch=patch, corner=record["corner"], value=record["value"])
    if record.get("sha256") not in (None, manipulation.sha256):
        raise UserError(f"{source}: the manipulation's sha256 does not match it; the file was edited, re-create it "
                        f"with `unlearn split`")
    if known is None:
        return manipulation, indices
    if not isinstance(known, dict) or not isinstance(known.get("indices"), list) or not known["indices"]:
        raise UserError(f"{source}: 'known' must be an object with a non-empty 'indices' list")
    values = [integer(value, "known index") for value in known["indices"]]
    known_indices = torch.tensor(values, dtype=torch.long).unique()
    if len(known_indices) != len(values) or not bool(torch.isin(known_indices, indices).all()):
        raise UserError(f"{source}: the known indices must be distinct and among the forget set's indices")
    if known.get("sha256") not in (None, sha256_indices(known_indices)):
        raise UserError(f"{source}: the known part's sha256 does not match its indices; re-create it with `unlearn split`")
    return manipulation, known_indices


def _npy_indices(data: bytes, source: str) -> list:
    """A 1-D integer `.npy` array, its header checked against the file's size before anything is built."""
    stream = io.BytesIO(data)
    try:
        version = np.lib.format.read_magic(stream)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran_order, dtype = read_header(stream, max_header_size=10_000)
    except (ValueError, SyntaxError, TypeError) as error:
        raise UserError(f"{source}: unreadable .npy index list ({str(error).splitlines()[0][:80]})") from None
    if len(shape) != 1 or dtype.kind not in "iu" or dtype.hasobject:
        raise UserError(f"{source}: a .npy forget set must be a 1-D integer array, got {dtype} {shape}")
    body = len(data) - stream.tell()
    if shape[0] * dtype.itemsize != body:
        raise UserError(f"{source}: .npy header claims {shape[0]:,} values of {dtype.itemsize} bytes but the file "
                        f"holds {body:,} bytes after it; is it truncated?")
    check_values(shape[0], source, ".npy forget set")  # the bytes are there: each becomes a Python integer
    return np.frombuffer(data, dtype=dtype, offset=stream.tell()).tolist()


_SEPARATOR = np.zeros(256, dtype=bool)  # bytes that separate the indices of a text forget set
_SEPARATOR[list(b" \t\n\r\x0b\x0c,")] = True
_STRAY = re.compile(rb"[^0-9 \t\n\r\x0b\x0c,-]")  # a byte that belongs to no index and no separator


def _token_count(data: bytes) -> int:
    """How many indices a text forget set lists (runs of bytes between separators), counted chunk by chunk in
    constant memory, before a string is built for any of them."""
    count, after_separator = 0, True
    for start in range(0, len(data), SCAN_CHUNK):
        separator = _SEPARATOR[np.frombuffer(data, dtype=np.uint8, count=min(SCAN_CHUNK, len(data) - start), offset=start)]
        count += int(np.count_nonzero(~separator[0])) * after_separator + int(np.count_nonzero(~separator[1:] & separator[:-1]))
        after_separator = bool(separator[-1])
    return count


def _not_an_index(token: str, source: str) -> str:
    return (f"{source}: {token[:30]!r} is not an integer index; a text forget set is integers in ASCII digits (0-9) "
            f"separated by whitespace or commas (or give a JSON list, an {FORMAT} file or a .npy array)")


def _indices_from(data: bytes, source: str) -> tuple[list, dict | None]:
    if data[:6] == b"\x93NUMPY":
        return _npy_indices(data, source), None
    if re.match(rb"\s*\[", data):  # a bare JSON list of indices: a plain forget set, like a text list
        return load_json(data, source, "forget-set"), None
    if re.match(rb"\s*\{", data):
        document = load_json(data, source, "forget-set")
        if not isinstance(document, dict):
            raise UserError(f"{source}: forget-set JSON must be an object")
        if document.get("format") not in FORMATS:
            raise UserError(f"{source}: unknown forget-set format {str(document.get('format'))[:40]!r}; expected "
                            f"{' or '.join(FORMATS)}")
        if not isinstance(document.get("indices"), list):
            raise UserError(f"{source}: forget-set JSON has no 'indices' list")
        return document["indices"], document
    stray = _STRAY.search(data)
    if stray is not None:  # before any token is built: the list may hold many
        start = stray.start()
        while start > 0 and stray.start() - start < 30 and not _SEPARATOR[data[start - 1]]:
            start -= 1
        token = data[start:start + 30].split()[0].split(b",")[0]
        try:
            token = token.decode("utf-8")
        except UnicodeDecodeError:
            raise UserError(f"{source}: not a forget set (neither JSON, .npy nor a text list of indices)") from None
        raise UserError(_not_an_index(token, source))
    check_values(_token_count(data), source, "text forget set")
    text = data.decode("ascii")  # only digits, '-' and separators are left
    tokens = text.split() if "," not in text else [token for token in re.split(r"[\s,]+", text) if token]
    bad = next((token for token in tokens if not re.fullmatch(r"-?[0-9]{1,19}", token)), None)
    if bad is not None:
        raise UserError(_not_an_index(bad, source))
    return [int(token) for token in tokens], None


@reader("forget set")
def read_forget_set(path: str, num_train: int | None = None, dataset: str | None = None,
                    allow_other_dataset: bool = False, override_flag: str | None = "--allow-mismatch") -> ForgetSet:
    """Read and validate a forget set: integer, unique, in range, non-empty, for this dataset.

    A forget set made for another dataset is refused unless `allow_other_dataset`; the error suggests
    `override_flag` when the command has one.
    """
    source = "stdin" if path == "-" else str(path)
    values, document = _indices_from(read_input(path, "forget set"), source)
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        raise UserError(f"{source}: indices must be integers")
    if not values:
        raise UserError(f"{source}: the forget set is empty; it must name at least one training example")
    smallest, largest = min(values), max(values)
    if smallest < 0:
        raise UserError(f"{source}: negative index {smallest}; indices count training examples from 0")
    if num_train is not None and largest >= num_train:
        raise UserError(f"{source}: index {largest} is out of range for a training set of {num_train} examples")
    if largest > INT64_MAX:
        raise UserError(f"{source}: index {largest} is beyond the 64-bit range")
    indices = torch.tensor(values, dtype=torch.long)
    unique = torch.unique(indices)
    if len(unique) != len(indices):
        raise UserError(f"{source}: {len(indices) - len(unique)} duplicate indices; each example may appear once")
    indices = unique  # sorted
    forget = ForgetSet(indices=indices, sha256=sha256_indices(indices), source=source, info=document)
    if document is not None:
        forget.dataset = document.get("dataset")
        if document.get("sha256") not in (None, forget.sha256):
            raise UserError(f"{source}: sha256 does not match its indices; the file was edited, re-create it with `unlearn split`")
        if num_train is not None and document.get("num_train") not in (None, num_train):
            raise UserError(f"{source}: made for a training set of {document['num_train']} examples, this one has {num_train}; "
                            f"re-create it with `unlearn split` for this dataset")
        if document.get("format") == FORMAT_MANIPULATED:
            if values != indices.tolist():
                raise UserError(f"{source}: the indices of an {FORMAT_MANIPULATED} file must be sorted ascending "
                                f"(its labels follow their order); re-create it with `unlearn split`")
            forget.manipulation, forget.known = _manipulation(document, indices, source)
    if dataset is not None and forget.dataset not in (None, dataset) and not allow_other_dataset:
        raise UserError(f"{source}: forget set is for dataset {forget.dataset!r}, the model is trained on {dataset!r}; "
                        f"use a forget set made for {dataset!r}" + (f" (or {override_flag})" if override_flag else ""))
    return forget
