"""`--seeds SPEC`: one model per seed, all in one process (`train`, `localize`, `apply`; see docs/pools.md).

SPEC is an inclusive range `A-B`, a comma list `0,1,5`, or both (`0-3,7`). Paths may hold `{seed}`, replaced
per seed: the output must when SPEC names two or more seeds; an input without it is shared by every seed.
Everything is checked before any work: the SPEC (its count computed from the ranges before any list is built,
within the `seeds` limit), the outputs (one per seed, none of them an input) and the templated inputs.

Usage:
    parse_seeds("0-3,7")                                   # [0, 1, 2, 3, 7]
    seed_path("pool/original-{seed}.safetensors", 3)       # "pool/original-3.safetensors"
    runs = plan_seeds(seeds, seed, output, {"--model": model, "--config": config}, templated=("--model",),
                      example="pool/unlearned-{seed}.safetensors")
    run_seeds(runs, lambda run: work(run.seed, run.output, run.paths["--model"]))
"""

from __future__ import annotations

import dataclasses
import os
import random
import re
import stat
from dataclasses import dataclass
from typing import Annotated, Callable, Iterable, Optional

import typer

from unlearn_cli.cli.common import stderr
from unlearn_cli.errors import UserError
from unlearn_cli.limits import INT64_MAX, limit
from unlearn_cli.signals import reporting
from unlearn_cli.streams import SEED, STDIO, check_writable, written

_PART = re.compile(r"([0-9]+)(?:\s*-\s*([0-9]+))?")
_NEGATIVE = re.compile(r"^-|-\s*-")  # "-1", "3--1", "-3-1"
_DIGITS = len(str(INT64_MAX))


def seeds_option(paths: str, example: str, torchrun: str):
    """A command's `--seeds` option: `paths` says which of its inputs take `{seed}` and what is read once, `example`
    is an output template, `torchrun` what happens under torchrun."""
    return Annotated[Optional[str], typer.Option(
        "--seeds", metavar="SPEC",
        help=f"Run once per seed, all in this process: A-B (inclusive), a comma list, or both (0-31, 0,1,5, 0-3,7). "
             f"{{seed}} in -o is replaced by each seed (required for 2+ seeds), e.g. -o '{example}'. {paths} "
             f"Each seed's file is written as soon as it is done. Not with --seed. {torchrun}")]


def _shown(spec: str) -> str:
    return repr(spec if len(spec) <= 60 else spec[:57] + "...")


def _number(text: str, spec: str) -> int:
    digits = text.lstrip("0") or "0"
    if len(digits) > _DIGITS or int(digits) > INT64_MAX:
        raise UserError(f"--seeds {_shown(spec)}: seed {text[:24]}{'…' if len(text) > 24 else ''} is beyond "
                        f"2^63 - 1; give seeds from 0 to {INT64_MAX}")
    return int(digits)


def seed_ranges(spec: str) -> list[tuple[int, int]]:
    """The inclusive ranges of SPEC in its order, checked: well-formed, low to high, within the `seeds` limit
    (counted from the ranges, before any list is built), each seed named once."""
    shown = _shown(spec)
    example = "e.g. --seeds 0-31, --seeds 0,1,5 or --seeds 0-3,7"
    if not spec.strip():
        raise UserError(f"--seeds {shown}: names no seed; give a range, a comma list or both, {example}")
    ranges, count = [], 0
    for part in (piece.strip() for piece in spec.split(",")):
        if not part:
            raise UserError(f"--seeds {shown}: has an empty part (two commas in a row, or one at an end); "
                            f"separate seeds and ranges by single commas, {example}")
        match = _PART.fullmatch(part)
        if match is None:
            if _NEGATIVE.search(part) and re.fullmatch(r"[-0-9\s]+", part):
                raise UserError(f"--seeds {shown}: {part!r} holds a negative seed; seeds are integers from 0, "
                                f"{example}")
            raise UserError(f"--seeds {shown}: {part[:30]!r} is not a seed or a range A-B; {example}")
        low = _number(match.group(1), spec)
        high = low if match.group(2) is None else _number(match.group(2), spec)
        if high < low:
            raise UserError(f"--seeds {shown}: range {low}-{high} runs backwards; write it low to high: {high}-{low}")
        ranges.append((low, high))
        count += high - low + 1
    bound = limit("seeds")
    if count > bound:
        raise UserError(f"--seeds {shown}: names {count:,} seeds, more than the limit of {bound:,}; build the pool "
                        f"in several commands, or raise the limit with UNLEARN_MAX_SEEDS")
    ordered = sorted(ranges)
    for (_, previous_high), (low, high) in zip(ordered, ordered[1:]):
        if low <= previous_high:
            raise UserError(f"--seeds {shown}: seed {low} is named twice; name each seed once, {example}")
    return ranges


def parse_seeds(spec: str) -> list[int]:
    """The seeds of SPEC (`A-B`, `0,1,5`, `0-3,7`) in the order given; UserError for anything else."""
    return [seed for low, high in seed_ranges(spec) for seed in range(low, high + 1)]


def format_seeds(seeds: Iterable[int]) -> str:
    """The shortest SPEC for `seeds`, in their order: [0, 1, 2, 5] -> "0-2,5"."""
    parts: list[list[int]] = []
    for seed in seeds:
        if parts and seed == parts[-1][1] + 1:
            parts[-1][1] = seed
        else:
            parts.append([seed, seed])
    return ",".join(str(low) if low == high else f"{low}-{high}" for low, high in parts)


def seed_path(template: str | None, seed: int) -> str | None:
    """`template` with every `{seed}` replaced by `seed` (None stays None; other braces are left as they are)."""
    return None if template is None else template.replace(SEED, str(seed))


@dataclass(frozen=True)
class SeedRun:
    """One run of a command: its seed (None without --seeds: the command's own --seed applies), its output, and
    the path of every input flag for this run."""

    seed: int | None
    output: str
    paths: dict[str, object]

    def label(self, text: str) -> str:
        """A progress description, with the seed when there is one: `train mlp (seed 3)`."""
        return text if self.seed is None else f"{text} (seed {self.seed})"


def _identities(path: str) -> set:
    """What makes two paths the same file: the resolved path, and the inode of an existing file."""
    keys = {("path", os.path.realpath(path))}
    try:
        status = os.stat(path)
        keys.add(("inode", status.st_dev, status.st_ino))
    except OSError:
        pass
    return keys


def _check_input_exists(path: str, flag: str, seed: int) -> None:
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise UserError(f"{path}: {flag} of seed {seed} not found; check the path and --seeds") from None
    except OSError as error:
        raise UserError(f"{path}: cannot read {flag} of seed {seed} ({error.strerror}); check the path and its "
                        f"permissions") from None
    if stat.S_ISDIR(mode):
        raise UserError(f"{path}: {flag} of seed {seed} is a folder, expected a file; check the path and --seeds")


def plan_seeds(spec: str | None, seed: int | None, output: str, inputs: dict[str, object],
               templated: Iterable[str] = (), example: str = "pool/model-{seed}.safetensors", *,
               check_outputs: bool = True, binary: bool = True) -> list[SeedRun]:
    """The runs of a command, every path checked before any work.

    `inputs` maps each input flag to its path (None when not given), `templated` names those that may hold
    `{seed}`; `seed` is the `--seed` flag. Without `spec`: one run with the paths as given (no `{seed}` in
    them), and the output checked as `check_writable` does. With it: one run per seed; the outputs must be
    pairwise distinct and none may be an input of any seed; `check_outputs` False (torchrun ranks other than
    0) leaves the writability of the outputs to rank 0.
    """
    templated = tuple(templated)
    given = [("--output", output)] + [(flag, inputs.get(flag)) for flag in templated]
    if spec is None:
        for flag, path in given:
            if path is not None and SEED in str(path):
                raise UserError(f"{flag} {str(path)!r} holds {SEED}, which only --seeds fills in; add "
                                f"--seeds {0 if seed is None else seed} (or a range, e.g. --seeds 0-31)")
        if check_outputs:
            check_writable(output, "--output", inputs, binary=binary)
        return [SeedRun(None, output, dict(inputs))]
    if seed is not None:
        raise UserError(f"--seed {seed} and --seeds {_shown(spec)} cannot be used together: --seeds sets the seed "
                        f"of every run; drop --seed")
    seeds = parse_seeds(spec)
    several = len(seeds) > 1
    if several:
        if output == STDIO:
            raise UserError(f"-o - (stdout) takes one file but --seeds names {len(seeds)} seeds; write one file per "
                            f"seed, e.g. -o '{example}'")
        if SEED not in output:
            raise UserError(f"--output {output!r} names one file for {len(seeds)} seeds; put {SEED} in it, "
                            f"e.g. -o '{example}'")
        for flag in templated:
            if inputs.get(flag) == STDIO:
                raise UserError(f"{flag} - (stdin) can be read once only, but --seeds names {len(seeds)} seeds; give "
                                f"a file path ({SEED} in it for one file per seed)")
    runs = [SeedRun(value, seed_path(output, value),
                    {flag: seed_path(path, value) if flag in templated and path is not None else path
                     for flag, path in inputs.items()}) for value in seeds]
    for flag in templated:  # a missing file of seed 30 is found now, not after 30 runs
        if inputs.get(flag) is not None and SEED in str(inputs[flag]):
            for run in runs:
                _check_input_exists(run.paths[flag], flag, run.seed)
    if check_outputs:
        _check_outputs(runs, output, inputs, templated, example, binary)
    return runs


def _check_outputs(runs: list[SeedRun], template: str, inputs: dict[str, object], templated: tuple[str, ...],
                   example: str, binary: bool) -> None:
    """Every seed's output its own file, none of them an input of any seed, each writable."""
    shared = {flag: path for flag, path in inputs.items() if flag not in templated or SEED not in str(path)}
    known: dict[tuple, tuple[str, str]] = {}  # identity of an input of some seed -> (flag, path)
    for run in runs:
        for flag in templated:
            path = run.paths.get(flag)
            if path is not None and path != STDIO and SEED in str(inputs[flag]):
                for key in _identities(str(path)):
                    known.setdefault(key, (flag, str(path)))
    outputs: dict[tuple, int] = {}
    for run in runs:
        if run.output == STDIO:  # one seed: stdout
            check_writable(run.output, "--output", shared, binary=binary)
            continue
        identities = _identities(run.output)
        for key in identities:
            if key in outputs:
                raise UserError(f"--output {template!r} gives seeds {outputs[key]} and {run.seed} the same file "
                                f"{run.output}; make each seed's path its own, e.g. -o '{example}'")
        outputs.update((key, run.seed) for key in identities)
        matches = {}
        for key in identities:
            if key in known:
                flag, path = known[key]
                matches.setdefault(flag, path)
        check_writable(run.output, "--output", {**shared, **matches}, binary=binary)  # refuses any match


def _random_state() -> Callable[[], None]:
    """A snapshot of the global random generators; calling the result restores it."""
    import numpy as np  # here, as every import of torch-using code in this module: --help needs no torch
    import torch

    cuda = torch.cuda.is_available() and torch.cuda.is_initialized()
    state = (random.getstate(), np.random.get_state(), torch.get_rng_state(),
             torch.cuda.get_rng_state_all() if cuda else None)

    def restore() -> None:
        random.setstate(state[0])
        np.random.set_state(state[1])
        torch.set_rng_state(state[2])
        if state[3] is not None:
            torch.cuda.set_rng_state_all(state[3])

    return restore


DEALT_OUT = ("Under torchrun the seeds are dealt out over the processes (process r of W takes seeds r, r + W, "
             "r + 2W and so on), each running its seeds on its own GPU with the whole data and writing their files.")


def stacked_option(what: str):
    """A pool command's `--stacked/--no-stacked` option; `what` says what it does at once."""
    return typer.Option("--stacked/--no-stacked", help=f"With --seeds: {what}, parameters stacked, one optimizer step "
                                                        f"for all (default: on for cuda when they fit in half of the "
                                                        f"free memory, off otherwise).")


def check_pool_flag(stacked: bool | None, spec: str | None, verb: str) -> None:
    if stacked and spec is None:
        raise UserError(f"--stacked {verb} the models of a pool at once; give --seeds (e.g. --seeds 0-31)")


def stack_pool(requested: bool | None, spec: str | None, count: int, probe: torch.nn.Module, device: torch.device,
               what: str, quiet: bool, refusal: str | None = None) -> bool:
    """Whether a pool's runs go stacked (`unlearn_cli.stacked`): --stacked / --no-stacked, else on for cuda when the
    pool's parameters, gradients and momentum fit in half of the free memory. What cannot be stacked (`refusal`, or
    the architecture `probe`'s own) runs one model at a time, with a one-line note when --stacked asked for it."""
    if spec is None or requested is False:
        return False
    import torch

    from unlearn_cli.stacked import stack_refusal, stacked_bytes

    refusal = refusal or stack_refusal(probe)
    if refusal is not None:
        if requested and not quiet:
            stderr.print(f"note: --stacked: {what} one model at a time: {refusal}")
        return False
    if requested is None:
        return device.type == "cuda" and stacked_bytes(probe, count) <= torch.cuda.mem_get_info(device)[0] // 2
    return True


def dealt_out(spec: str | None) -> bool:
    """Whether a command's runs are dealt out over torchrun's processes: a pool (`--seeds`) under torchrun, where
    one process per seed beats every seed data-parallel over all of them."""
    from unlearn_cli.distributed import launch_environment

    return spec is not None and launch_environment() is not None


def run_seeds(runs: list[SeedRun], work: Callable[[SeedRun], None]) -> None:
    """`work(run)` for every run in order, each from the global random state the first one started from.

    An error or an interruption after some seeds are done says which files exist and how to run the rest. A seed
    is done once `work` returns, or once its output is written: an interruption may come between the two.
    """
    restore = _random_state() if len(runs) > 1 else None
    finished: list[int] = []
    for position, run in enumerate(runs):
        if restore is not None and position:
            restore()
        ended = lambda: run.seed is not None and written(run.output)  # noqa: E731
        done = lambda: finished + [run.seed] * ended()  # noqa: E731
        rest = lambda: [r.seed for r in runs[position + ended():]]  # noqa: E731
        try:
            with reporting(lambda: f"the files of seeds {format_seeds(done())} are written and complete, the rest "
                                   f"are not; run the rest with --seeds {format_seeds(rest())}" if done() else None):
                work(run)
        except UserError as error:
            if not done():
                raise
            raise UserError(f"{error} (the files of seeds {format_seeds(done())} are written; run the rest with "
                            f"--seeds {format_seeds(rest())})") from None
        if run.seed is not None:
            finished.append(run.seed)


class PoolModels:
    """The `--model` of every seed, and what the seeds share, read once from the first model: its dataset and the
    forget set. Every later model must fit the same data.

        models = PoolModels(runs, cfg.data_root, cfg.forget, cfg.allow_mismatch)
        checkpoint = models.model(run)        # the first run's model was read already
    """

    def __init__(self, runs: list[SeedRun], data_root: str | None, forget: str, allow_mismatch: bool):
        from unlearn_cli.io.checkpoint import load_checkpoint
        from unlearn_cli.io.forget import read_forget_set
        from unlearn_cli.lineage import data_as_trained, dataset_for

        self._first = load_checkpoint(runs[0].paths["--model"])
        self._reference = dataclasses.replace(self._first, model=None)  # what every model is checked against
        data = dataset_for(self._first, data_root)
        self._whole = read_forget_set(forget, num_train=data.num_train, dataset=self._first.dataset,
                                      allow_other_dataset=allow_mismatch)
        # the data as the models were trained on it, and the part of the forget set an unlearner knows
        self.data, self.forget_set = data_as_trained(data, self._whole, [self._first], unlearning=True)

    def architecture(self) -> torch.nn.Module:
        """The models' architecture, freshly built."""
        return self._reference.new_model()

    def model(self, run: SeedRun):
        from unlearn_cli.io.checkpoint import load_checkpoint
        from unlearn_cli.lineage import check_fits_data, check_trained_on

        checkpoint, self._first = (self._first or load_checkpoint(run.paths["--model"])), None
        check_fits_data(checkpoint, self._reference, self.data, f"--model of seed {run.seed}")
        check_trained_on(checkpoint, self._whole, unlearning=True)
        return checkpoint
