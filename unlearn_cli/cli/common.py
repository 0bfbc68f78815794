"""What every command shares: error handling, progress bars, shared options.

Usage:
    @app.command()
    @handle_errors
    def train(...): ...
"""

from __future__ import annotations

import contextlib
import contextvars
import copy
import functools
import json
import math
import os
import sys
import time
from typing import Annotated, Callable, Optional

import typer
from rich.console import Console, ConsoleDimensions, Group
from rich.markup import escape
from rich.measure import Measurement
from rich.padding import Padding
from rich.panel import Panel
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from unlearn_cli.errors import UserError, one_line
from unlearn_cli.signals import Interrupted

LOG_WIDTH = 1000  # columns a table may use when the stream is a log file or a pipe: tables take only what they need
HELP_WIDTH = 120  # columns of `--help` when stdout is not a terminal: wide enough for every option name, uncut
# a --help panel whose help column would be narrower than this stacks (names on a line, their help below): at 30
# columns a line still carries a clause (five or six words) and every word of the help texts fits whole; narrower,
# sentences break every word or two and the longest words (`train_subset=10000`, paths) fold
STACKED_HELP_BELOW = 30


def is_terminal(stream=None) -> bool:
    """Whether STREAM (default: stderr) is a real terminal. FORCE_COLOR and CI settings do not make a log a terminal."""
    stream = sys.stderr if stream is None else stream
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):  # closed, or not a file at all
        return False


class _Console(Console):
    """A rich Console that renders whole when its stream is not a terminal: a wide virtual width instead of 80
    columns, so no table cuts a name or a number with an ellipsis. On a terminal, rich's own width (COLUMNS)."""

    @property
    def size(self) -> ConsoleDimensions:
        if not is_terminal(self.file):
            return ConsoleDimensions(LOG_WIDTH, Console.size.fget(self).height)
        return Console.size.fget(self)

    @size.setter
    def size(self, new_size) -> None:
        Console.size.fset(self, new_size)

    def print(self, *objects, **kwargs) -> None:
        """Console.print, a table that would not fit the width printed as `fitted_tables` of it."""
        for item in objects:
            for part in fitted_tables(item, self) if isinstance(item, Table) else [item]:
                super().print(part, **kwargs)


def terminal_text(text) -> str:
    """Text from a file in a terminal table: one line, its rich markup escaped (`[/]` in a name would be read)."""
    return escape(one_line(str(text)))


def add_row(table: Table, cells: list, style: str | None = None) -> None:
    """A table row of text from files: every cell `terminal_text`."""
    table.add_row(*map(terminal_text, cells), style=style)


def fitted_tables(table: Table, console: Console) -> list[Table]:
    """TABLE, or the parts of it that fit the console's width with no number or name cut.

    A table wider than the console is split by columns: every part repeats the label columns it starts with (the
    left-justified ones) and takes as many of the others as fit whole; the title goes on the first part, the caption
    on the last. A column never gets narrower than its longest word, so a part that must still wrap (one column too
    wide on its own) wraps at spaces, never inside a number or a name.
    """
    options = console.options
    unbounded = options.update(max_width=10**6)  # Measurement.get caps at the width given: measure without a cap

    def measure(renderable) -> Measurement:
        return Measurement.get(console, unbounded, renderable)

    def part(source: Table, columns) -> Table:
        piece = copy.copy(source)
        piece.columns = [copy.copy(column) for column in columns]
        return piece

    whole = part(table, table.columns)
    for column in whole.columns:  # measured once: the parts copy these columns
        column.min_width = max([measure(column.header).minimum, *(measure(cell).minimum for cell in column.cells)],
                               default=1)
    if measure(whole).maximum <= options.max_width:
        return [whole]
    columns = whole.columns
    labels = 0
    while labels < len(columns) - 1 and columns[labels].justify in ("left", "default"):
        labels += 1
    groups: list[list] = [[]]
    for column in columns[labels:]:
        if groups[-1] and measure(part(whole, columns[:labels] + groups[-1] + [column])).maximum > options.max_width:
            groups.append([])
        groups[-1].append(column)
    parts = [part(whole, columns[:labels] + group) for group in groups]
    for index, piece in enumerate(parts):
        piece.title = table.title if index == 0 else None
        piece.caption = table.caption if index == len(parts) - 1 else None
    return parts


stderr = _Console(stderr=True, soft_wrap=True, highlight=False)


def whole_help_when_piped() -> None:
    """Make typer's `--help` (and usage errors) keep option names whole at any width: their columns do not wrap, the
    help column gives way; where it would get fewer than STACKED_HELP_BELOW columns (or fewer than its longest word),
    the panel is stacked instead: each option's names on a line, its help below, indented and wrapped at spaces to the
    full width. The width: TERMINAL_WIDTH when set, else COLUMNS when set (a terminal's, or one exported to a pipe),
    else a terminal's own, else HELP_WIDTH columns when the stream is not a terminal."""
    try:
        from typer import rich_utils
    except ImportError:  # typer without rich: plain click help, which wraps instead of cutting
        return
    make_console = getattr(rich_utils, "_get_rich_console", None)
    if make_console is None or getattr(make_console, "whole_when_piped", False):
        return

    @functools.wraps(make_console)
    def console_for_help(*args, **kwargs):
        console = make_console(*args, **kwargs)
        if (getattr(rich_utils, "MAX_WIDTH", None) is None and not is_terminal(console.file)
                and not os.environ.get("COLUMNS", "").isdigit()):
            console.width = HELP_WIDTH
        print_panel = console.print

        def print_whole(*objects, **options):
            for item in objects:
                if isinstance(item, Panel) and isinstance(item.renderable, Table):
                    _names_whole(item.renderable)
                    _, right, _, left = Padding.unpack(item.padding)
                    if _help_too_narrow(item.renderable, console, console.width - 2 - left - right):
                        item.renderable = _stacked(item.renderable)
            print_panel(*objects, **options)

        console.print = print_whole
        return console

    console_for_help.whole_when_piped = True
    rich_utils._get_rich_console = console_for_help


def _names_whole(table: Table) -> None:
    """A --help panel's table: every column but the last (the help text) unwrapped, so only the help text gives way
    to a narrow width; its words longer than the column fold instead of ending in an ellipsis."""
    for column in table.columns[:-1]:
        column.no_wrap = True
    if table.columns:
        table.columns[-1].overflow = "fold"
        for cell in table.columns[-1].cells:
            for text in _help_texts(cell):
                if isinstance(text, Text):
                    text.overflow = "fold"


def _help_texts(cell) -> list:
    """The renderables of a help cell: a Text, or those of typer's Columns (help, default, `[required]`)."""
    return list(getattr(cell, "renderables", [cell]))


def _help_too_narrow(table: Table, console: Console, width: int) -> bool:
    """Whether the last column (the help text) of a --help panel's table, WIDTH columns wide with its other columns
    whole, would be narrower than STACKED_HELP_BELOW or than the longest word of its help texts (that would fold)."""
    if len(table.columns) < 2 or width < 1:
        return False
    help_width = table._calculate_column_widths(console, console.options.update_width(width))[-1]
    _, right, _, left = Padding.unpack(table.padding)
    help_width -= left + (right if table.pad_edge else 0)
    words = [word for cell in table.columns[-1].cells for text in _help_texts(cell) if isinstance(text, Text)
             for word in text.plain.split()]
    return help_width < max([STACKED_HELP_BELOW, *map(len, words)])


def _stacked(table: Table) -> Group:
    """A --help panel's table as lines: each row's names, metavar and type on one line (a one-character column, the
    required `*`, kept as a margin so that the names align), its help text below, indented by four columns and
    wrapped at spaces to the panel's width (a word longer than the whole width folds, none is cut)."""
    columns = [list(column.cells) for column in table.columns]
    names, helps = columns[:-1], columns[-1]
    margins = [max((len(cell.plain if isinstance(cell, Text) else str(cell)) for cell in column), default=0) == 1
               for column in names]
    margin = 2 * sum(margins)
    lines = []
    for row in range(table.row_count):
        line, separator = Text(overflow="fold"), ""
        for column, is_margin in zip(names, margins):
            cell = column[row] if row < len(column) else ""
            text = cell if isinstance(cell, Text) else Text(str(cell))
            if is_margin:
                line.append_text(text).append(" " * (2 - len(text.plain)))
            elif text.plain:
                line.append(separator).append_text(text)
                separator = "  "
        lines.append(line)
        cell = helps[row] if row < len(helps) else ""
        parts = [part if not isinstance(part, str) else Text(part) for part in _help_texts(cell)]
        parts = [part for part in parts if not isinstance(part, Text) or part.plain]
        if parts and all(isinstance(part, Text) for part in parts):
            body = Text(" ", overflow="fold").join(parts)
            body.overflow = "fold"
            parts = [body]
        if parts:
            lines.append(Padding(Group(*parts), (0, 0, 0, margin + 4)))
    return Group(*lines)


class State:
    debug = False


_INSIDE_COMMAND = contextvars.ContextVar("inside_command", default=False)  # set while a command runs


def handle_errors(command):
    """Turn UserError into one line on stderr and exit 1; SIGINT/SIGTERM into a clean exit (130/143).

    A command run by another one (`demo`'s steps) passes an interruption on, so the outer command stops too.
    """

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        nested = _INSIDE_COMMAND.get()
        context = contextvars.copy_context()  # how the command names settings (`errors.name_as`) ends with it
        context.run(_INSIDE_COMMAND.set, True)
        try:
            return context.run(command, *args, **kwargs)
        except UserError as error:
            if State.debug:
                raise
            sys.stderr.write(f"error: {one_line(str(error))}\n")
            raise typer.Exit(1) from None
        except Exception as error:  # a defect: one line, and the way to see more
            if State.debug or type(error).__module__.startswith(("typer", "click")):  # exits and usage errors
                raise
            detail = str(error).splitlines()[0][:200] if str(error) else "no detail"
            sys.stderr.write(one_line(f"error: internal error ({type(error).__name__}: {detail}); "
                                      f"rerun with --debug for the traceback") + "\n")
            raise typer.Exit(1) from None
        except Interrupted as interruption:
            if nested:
                raise
            sys.stderr.write(interruption.message() + "\n")
            raise typer.Exit(128 + interruption.signal_number) from None

    return wrapper


ConfigOption = Annotated[Optional[str], typer.Option("--config", help="YAML file of options; flags override it.")]
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars or tables on stderr.")]


def _clock_text(seconds: float) -> str:
    seconds = round(max(0.0, seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


class ProgressLines:
    """Plain progress lines for logs and pipes, where a live bar cannot redraw itself.

    One line when the work starts (0%), then one whenever the step crosses the next `every_fraction` of the total
    or `every_seconds` have passed since the last line, whichever comes first, and a final line. With an unknown
    total only the time interval applies. `clock` and `write` are injectable, so the cadence is testable without
    waiting.

        lines = ProgressLines("train mlp", 100, write=print)
        lines.start()
        lines.update(10, status="epoch 1 loss 2.301")   # -> train mlp: 10/100 (10%) 0:00:01 elapsed, eta 0:00:09, ...
        lines.finish()
    """

    def __init__(self, description: str, total: int | None, *, write: Callable[[str], None] | None = None,
                 clock: Callable[[], float] = time.monotonic, every_fraction: float = 0.1,
                 every_seconds: float = 30.0):
        self.description, self.total = description, total or None
        self.write = write or (lambda line: stderr.print(line, markup=False, highlight=False))
        self.clock, self.every_fraction, self.every_seconds = clock, every_fraction, every_seconds
        self.started = self.last_time = None
        self.step, self.status = 0, ""
        self.last_step = self.last_mark = None  # the step and the fraction mark of the latest line

    def _mark(self, step: int) -> int | None:
        if not self.total or self.every_fraction <= 0:
            return None
        return math.floor(min(step, self.total) / self.total / self.every_fraction + 1e-9)

    def start(self, message: str = "started") -> None:
        """The 0% line: `train mlp: 0/100 (0%), started`."""
        self.started = self.last_time = self.clock()
        self.step, self.last_step, self.last_mark = 0, 0, self._mark(0)
        self.write(f"{self.description}: " + (f"0/{self.total} (0%), " if self.total else "") + message)

    def update(self, step: int, total: int | None = None, status: str = "", force: bool = False) -> None:
        """Record STEP (of TOTAL, when it becomes known) and write a line when an interval is up."""
        if self.started is None:
            self.start()
        if total:
            self.total = total
            if self.last_mark is None:  # the total just became known: the marks count from the latest line
                self.last_mark = self._mark(self.last_step or 0)
        if self.last_step is not None and step < self.last_step:  # a new phase counts from 0 again
            self.last_mark = -1
        self.step, self.status = step, status
        now, mark = self.clock(), self._mark(step)
        if (force or (mark is not None and (self.last_mark is None or mark > self.last_mark))
                or now - self.last_time >= self.every_seconds):
            self._emit()

    def finish(self) -> None:
        """The final line, unless the latest line already showed the latest step."""
        if self.started is not None and self.step != self.last_step:
            self._emit()

    def _emit(self) -> None:
        now = self.clock()
        elapsed = now - self.started
        self.last_time, self.last_step, self.last_mark = now, self.step, self._mark(self.step)
        if self.total:
            fraction = min(self.step, self.total) / self.total
            parts = [f"{self.step}/{self.total} ({100 * fraction:.0f}%)", f"{_clock_text(elapsed)} elapsed"]
            if 0 < fraction < 1:
                parts.append(f"eta {_clock_text(elapsed * (1 - fraction) / fraction)}")
        else:
            parts = [f"step {self.step}", f"{_clock_text(elapsed)} elapsed"]
        if self.status:
            parts.append(self.status)
        self.write(f"{self.description}: " + ", ".join(parts))


def step_status(info: dict, rate: float | None) -> str:
    """`epoch 2 loss 0.512 acc 84.4% 1,303 img/s` from a training loop's step info."""
    parts = []
    if "epoch" in info:
        parts.append(f"epoch {info['epoch'] + 1}")
    if info.get("loss") is not None:
        parts.append(f"loss {info['loss']:.3f}")
    if info.get("accuracy") is not None:
        parts.append(f"acc {100 * info['accuracy']:.1f}%")
    if rate is not None:
        parts.append(f"{rate:,.0f} img/s")
    return " ".join(parts)


@contextlib.contextmanager
def progress_bar(description: str, total: int | None, quiet: bool, *, clock: Callable[[], float] = time.perf_counter,
                 every_fraction: float = 0.1, every_seconds: float = 30.0):
    """Progress on stderr; yields the `on_step` callback that the training loop calls.

    On a terminal: a rich live bar. Otherwise (a log file, a pipe, CI): plain lines, one at the start, then every
    `every_fraction` of the steps or every `every_seconds`, whichever comes first, and one at the end. `total` may
    be None; the loop's `total_steps` fills it in.
    """
    if quiet:
        yield None
        return
    state = {"started": None}

    def status_of(info: dict) -> str:
        now = clock()
        if state["started"] is None:
            state["started"] = (now, info.get("images", 0))
        start, first_images = state["started"]
        rate = (info["images"] - first_images) / (now - start) if "images" in info and now > start else None
        return step_status(info, rate)

    if not is_terminal(stderr.file):
        lines = ProgressLines(description, total, clock=clock, every_fraction=every_fraction,
                              every_seconds=every_seconds)
        lines.start()

        def on_line(info: dict) -> None:
            lines.update(info["step"], info.get("total_steps"), status_of(info))

        try:
            yield on_line
        finally:
            lines.finish()
        return
    columns = [TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
               TextColumn("{task.fields[status]}"), TimeElapsedColumn(), TimeRemainingColumn()]
    with Progress(*columns, console=stderr, transient=False) as progress:
        task = progress.add_task(description, total=total, status="")

        def on_step(info: dict) -> None:
            progress.update(task, completed=info["step"], total=info.get("total_steps") or total,
                            status=status_of(info))

        yield on_step


def pyplot():
    """matplotlib's pyplot on the Agg backend (files, no display); matplotlib is an optional extra."""
    try:
        import matplotlib
    except ImportError:
        raise UserError("--plot needs matplotlib, an optional extra: pip install -e '.[plot]' (or pip install matplotlib)") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def print_json(document: dict, path: str) -> None:
    from unlearn_cli.streams import write_output

    write_output(path, (json.dumps(document, indent=2, sort_keys=True) + "\n").encode(), binary=False)
