"""The `drfleet` program: Invoke's Program with drfleet's own options only.

Invoke's core options (`-R/--dry`, `-f/--config`, `-e/--echo`, ...) mean nothing to drfleet,
and some harm: `-R` claimed to echo commands but a real `train` ran, and `-f inv.yml` before
the command was taken as an Invoke config file. The program offers `-h`, `-V` and shell
completion; what Invoke reads of the others it finds at their defaults (`args`). A word or a
flag it does not know, or a value of the wrong kind, is one line naming it with the nearest
names and exit status 2 (EXIT_USAGE), never a traceback.
"""

from __future__ import annotations

import difflib
import inspect
import json
import re
import sys
from typing import Any

from invoke.exceptions import Exit, ParseError
from invoke.parser.argument import Argument
from invoke.program import Program

EXIT_USAGE = 2

# what Invoke's Program reads of its own core options, at the values that change nothing
_INERT = {
    "warn-only": False,
    "pty": False,
    "hide": None,
    "echo": False,
    "dry": False,
    "command-timeout": None,
    "prompt-for-sudo-password": False,
    "config": None,
    "write-pyc": False,
    "debug": False,
    "list": None,
    "list-format": "flat",
    "list-depth": None,
    "search-root": None,
    "collection": None,
}


class DrfleetProgram(Program):
    def core_args(self) -> list[Argument]:
        return [
            Argument(names=("help", "h"), optional=True, help="show this help, or a command's"),
            Argument(names=("version", "V"), kind=bool, default=False, help="show the version"),
            Argument(
                names=("print-completion-script",),
                kind=str,
                default="",
                help="print a tab-completion script for bash, zsh or fish",
            ),
            Argument(names=("complete",), kind=bool, default=False, help="(used by completion)"),
        ]

    def task_args(self) -> list[Argument]:
        return []

    @property
    def args(self) -> Any:
        args = super().args
        for name, value in _INERT.items():
            if name not in args:
                args[name] = Argument(names=(name,), default=value)
        return args

    def parse_core_args(self) -> None:
        try:
            super().parse_core_args()
        except ParseError as exc:
            raise self._said(self._usage(str(exc))) from None

    def parse_tasks(self) -> None:
        try:
            super().parse_tasks()
        except ParseError as exc:
            raise self._said(self._usage(str(exc))) from None
        except ValueError as exc:  # a flag's value of the wrong kind (int('abc'))
            raise self._said(Exit(self._bad_value(str(exc)), code=EXIT_USAGE)) from None

    def parse_cleanup(self) -> None:
        try:
            super().parse_cleanup()
        except ParseError as exc:
            raise self._said(self._usage(str(exc))) from None

    def _said(self, exit: Exit) -> Exit:
        """With --json (-j) anywhere, the error goes on stdout too, as every command's does."""
        if {"--json", "-j"} & set(self.argv[1:]):
            text = str(exit.message or "").removeprefix("drfleet: ")
            sys.stdout.write(json.dumps({"ok": False, "error": text, "fix": None}, indent=2) + "\n")
        return exit

    def print_help(self) -> None:
        print("Usage: drfleet COMMAND [--options]   (drfleet COMMAND --help: its options)")
        print("")
        print("Options:")
        print("")
        self.print_columns(self.initial_context.help_tuples())
        self.list_tasks()

    def print_task_help(self, name: str) -> None:
        ctx = self.parser.contexts[name]
        # an incrementable flag (-v, -vv, -vvv) takes no value, whatever Invoke's help says
        tuples = [
            (re.sub(r"(-v) INT, (--verbose)=INT", r"\1, \2", f), h) for f, h in ctx.help_tuples()
        ]
        print(f"Usage: drfleet {name} [--options]")
        print("")
        for line in (inspect.getdoc(self.collection[name]) or "").splitlines():
            print(self.leading_indent + line if line.strip() else "")
        print("")
        print("Options:")
        self.print_columns(tuples)

    # -- messages ------------------------------------------------------------------------
    def _commands(self) -> list[str]:
        return sorted(self.collection.task_names) if self.collection else []

    def _flags(self, command: str | None) -> list[str]:
        ctx = self.parser.contexts.get(command) if command and hasattr(self, "parser") else None
        return sorted(ctx.flags) if ctx is not None else []

    def _command_in_argv(self) -> str | None:
        return next((a for a in self.argv[1:] if a in self._commands()), None)

    def _usage(self, message: str) -> Exit:
        what = re.fullmatch(r"No idea what '(.*)' is!", message)
        if what is None:
            return Exit(f"drfleet: {message}", code=EXIT_USAGE)
        word = what.group(1)
        command = self._command_in_argv()
        argv = self.argv[1:]
        if word.startswith("-") and command and argv.index(word) < argv.index(command):
            command = None  # before the command: no command's flag
        if word.startswith("-"):
            return Exit(self._unknown_flag(word, command), code=EXIT_USAGE)
        at = argv.index(word) if word in argv else 0
        if command and at and argv[at - 1] in ("-v", "--verbose", "-vv", "-vvv"):
            return Exit(
                f"drfleet {command}: -v takes no value: -v, -vv or -vvv for more",
                code=EXIT_USAGE,
            )
        if word == "help":
            return Exit(
                "drfleet: 'help' is no command; `drfleet --help` lists the commands and "
                "`drfleet COMMAND --help` shows one",
                code=EXIT_USAGE,
            )
        near = difflib.get_close_matches(word, self._commands(), n=1, cutoff=0.6)
        if command is None:
            hint = f"; did you mean {' or '.join(near)}?" if near else ""
            return Exit(
                f"drfleet: no command {word!r}{hint} (`drfleet --help` lists them)",
                code=EXIT_USAGE,
            )
        return Exit(
            f"drfleet {command}: unexpected {word!r} (flags take their values as --flag VALUE; "
            f"`drfleet {command} --help` lists them)",
            code=EXIT_USAGE,
        )

    def _unknown_flag(self, flag: str, command: str | None) -> str:
        where = f"drfleet {command}" if command else "drfleet"
        name = flag.split("=", 1)[0]
        if command is None:
            return (
                f"drfleet: {name} before the command: drfleet takes only -h and -V there; a "
                f"command's flags go after it (`drfleet facts {name} ...`; `drfleet COMMAND "
                "--help` lists them)"
            )
        near = difflib.get_close_matches(name, self._flags(command), n=1, cutoff=0.7)
        hint = f"; did you mean {' or '.join(near)}?" if near else ""
        return f"{where}: unknown flag {name}{hint} (`{where} --help` lists them)"

    def _bad_value(self, message: str) -> str:
        """Which flag got a value of the wrong kind, from the value int() refused."""
        m = re.search(r"with base 10: '(.*)'$", message)
        value = m.group(1) if m else ""
        argv = self.argv[1:]
        flag = ""
        for i, a in enumerate(argv):
            if a.endswith("=" + value) and a.startswith("-"):
                flag = a.split("=", 1)[0]
            elif a == value and i and argv[i - 1].startswith("-"):
                flag = argv[i - 1]
        command = self._command_in_argv()
        where = f"drfleet {command}" if command else "drfleet"
        return f"{where}: {flag or 'a flag'} takes a whole number, not {value!r}"


def run(namespace: Any, version: str, argv: list[str] | None = None) -> None:
    """argv: sys.argv by default. `drfleet COMMAND ... --help` is asked as `drfleet --help
    COMMAND`: invoke would take the flag for the value of a positional argument not yet
    given (droa-get-model --help)."""
    argv = list(sys.argv if argv is None else argv)
    args = argv[1:]
    asks = [i for i, a in enumerate(args) if a in ("-h", "--help")]
    named = [i for i, a in enumerate(args) if not a.startswith("-")]
    if asks and named and named[0] < asks[0]:
        argv = [argv[0], "--help", args[named[0]]]
    DrfleetProgram(namespace=namespace, version=version, name="drfleet", binary="drfleet").run(argv)
