"""The one exception type that the command line turns into a one-line error and exit code 1, and how its
messages name a setting.

Library code names a setting by its name (`flag("topk")`, `example("topk", 0.1)`); the command that runs it says
how the user gave the setting, so the same check reads `--topk 0.0: …` after `localize --topk 0`, `--grid topk
0.0: …` after `tune --grid topk=0`, and `--param lr …` after `apply --param lr=…`:

    with given_as("grid", ["topk", "budget"]):
        resolve_settings(settings)      # raises UserError("--grid topk 0.0: must be in (0, 1], e.g. --grid topk=0.1")
"""

from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from typing import Iterable, Iterator


class UserError(Exception):
    """Bad input from the user: the message names the problem and the fix, and is shown as one line (`one_line`)."""


# control characters and line separators, as Python writes them in a string's repr: a file name or a value with a
# newline cannot split a message, nor a carriage return or an escape sequence rewrite the terminal
_ESCAPES = {code: repr(chr(code))[1:-1] for code in (*range(32), 127, 0x85, 0x2028, 0x2029)}
MESSAGE_CHARACTERS = 4000  # a longer message keeps its start and its end, the middle left out


def one_line(message: str) -> str:
    """`message` as one printable line: control characters escaped, a very long message shortened in the middle."""
    if len(message) > MESSAGE_CHARACTERS:
        message = f"{message[:MESSAGE_CHARACTERS - 1000]} … {message[-1000:]}"
    return message.translate(_ESCAPES)


# setting -> the option it was given through ("grid": tune's --grid k=…, "param": --param k=…); absent: its own flag
_GIVEN_AS: ContextVar[dict[str, str]] = ContextVar("given_as", default={})


def name_as(option: str, settings: Iterable[str]) -> None:
    """From now on in this command, messages about `settings` name them as given through `--{option} NAME=VALUE`
    (each command runs in a context of its own: `cli.common.handle_errors`)."""
    _GIVEN_AS.set({**_GIVEN_AS.get(), **{setting: option for setting in settings}})


@contextmanager
def given_as(option: str, settings: Iterable[str]) -> Iterator[None]:
    """Within the block, messages about `settings` name them as given through `--{option} NAME=VALUE`."""
    token = _GIVEN_AS.set({**_GIVEN_AS.get(), **{setting: option for setting in settings}})
    try:
        yield
    finally:
        _GIVEN_AS.reset(token)


def flag(setting: str, option: str | None = None) -> str:
    """How the user gave `setting`, as error messages name it: `--max-iterations`, or `--grid max_iterations`.
    `option` is how it is given where the command said nothing (a method's own options: "param")."""
    option = _GIVEN_AS.get().get(setting, option)
    return f"--{option} {setting}" if option else "--" + setting.replace("_", "-")


def example(setting: str, value, option: str | None = None) -> str:
    """How to give `setting` the value `value`, the way it was given: `--budget 0.3`, or `--grid budget=0.3`."""
    option = _GIVEN_AS.get().get(setting, option)
    return f"--{option} {setting}={value}" if option else f"{flag(setting)} {value}"
