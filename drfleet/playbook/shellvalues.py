"""How a playbook's `shell:` and `unless:` lines take values: never as shell text.

Each `{{ value }}` becomes a reference to a variable of its own (`"${DRFLEET_ARG_1}"`), and the
values travel beside the line, set in its environment by a command whose every part is quoted
(`env DRFLEET_ARG_1=... sh -c LINE`). The shell never parses what an expansion yields, so no
placement of a value in the line (a here-document, quotes, a comment) can run it.

Where the placeholder stands only decides the reference's form, read from the line as a shell
would: outside quotes `"${NAME}"` (one word, as `| quote` gives in Ansible); inside double
quotes or a here-document `${NAME}` (the value in place). Where the shell expands nothing
(single quotes, a here-document with a quoted delimiter) or evaluates the value as code
(`$(( ))` arithmetic) the line is refused, saying what to write instead. A scanner that
misread a line could only pick the wrong form of a reference: never run a value.

Pure: the reading is over text, with the values' places marked by tokens.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

VAR = "DRFLEET_ARG_"

# where the shell expands nothing, or evaluates the value: (what it is, what to write instead)
REFUSED = {
    "single": (
        "inside single quotes, where the shell expands nothing",
        "drop the quotes: drfleet passes each value as one word, whatever it holds "
        '(or use double quotes: "{x}")',
    ),
    "heredoc-quoted": (
        "inside a here-document whose delimiter is quoted (<<'EOF'), where the shell expands "
        "nothing",
        "unquote the delimiter (<<EOF): the value is still never run",
    ),
    "arith": (
        "inside $(( )), where the shell would evaluate the value as arithmetic",
        "compute it in the playbook instead, e.g. {{ x | int + 1 }}",
    ),
}


@dataclass(frozen=True)
class Refused:
    index: int  # which value (0-based, in the order they are output)
    context: str  # a key of REFUSED


def reference(n: int, context: str) -> str:
    """The text that stands for value n (1-based) where it was placed."""
    return f'"${{{VAR}{n}}}"' if context == "word" else f"${{{VAR}{n}}}"


def contexts(text: str, mark: re.Pattern[str]) -> dict[int, str]:
    """For each mark in text (its group 1 is the value's index), where it stands: word,
    double, heredoc, comment, or one of REFUSED."""
    return _Scanner(text, mark).run()


class _Scanner:
    WORDISH = ("top", "sub", "paren", "bt")
    BREAKS = " \t\n;&|()<>"

    def __init__(self, text: str, mark: re.Pattern[str]) -> None:
        self.text, self.mark = text, mark
        self.out: dict[int, str] = {}
        self.stack = ["top"]
        self.pending: list[tuple[str, bool, bool]] = []  # here-documents: delim, quoted, -
        self.arith = 0  # open parens inside $(( ))

    def note(self, start: int, end: int, context: str) -> None:
        for m in self.mark.finditer(self.text, start, end):
            self.out[int(m.group(1))] = context

    def run(self) -> dict[int, str]:
        text, i = self.text, 0
        word_start = True
        while i < len(text):
            m = self.mark.match(text, i)
            mode = self.stack[-1]
            if m:
                self.out[int(m.group(1))] = (
                    "word" if mode in self.WORDISH else "double" if mode == "double" else mode
                )
                i, word_start = m.end(), False
                continue
            c = text[i]
            if mode == "arith":
                i = self.in_arith(i)
                continue
            if c == "\\":
                i, word_start = i + 2, False
                continue
            if mode == "double":
                i = self.in_double(i)
                continue
            if c == "\n" and self.pending:
                i = self.heredocs(i + 1)
                word_start = True
                continue
            i, word_start = self.in_word(i, word_start)
        return self.out

    def in_arith(self, i: int) -> int:
        text = self.text
        if text[i] == "(":
            self.arith += 1
        elif text[i] == ")":
            if self.arith:
                self.arith -= 1
            elif text.startswith("))", i):
                self.stack.pop()
                return i + 2
        return i + 1

    def in_double(self, i: int) -> int:
        text = self.text
        if text[i] == '"':
            self.stack.pop()
            return i + 1
        return self.opening(i) or i + 1

    def opening(self, i: int) -> int:
        """Pushes what `$((`, `$(` or a backquote at i opens; returns past it (0: none)."""
        text = self.text
        if text.startswith("$((", i):
            self.stack.append("arith")
            self.arith = 0
            return i + 3
        if text.startswith("$(", i):
            self.stack.append("sub")
            return i + 2
        if text[i] == "`":
            if self.stack[-1] == "bt":
                self.stack.pop()
            else:
                self.stack.append("bt")
            return i + 1
        return 0

    def in_word(self, i: int, word_start: bool) -> tuple[int, bool]:
        text, c = self.text, self.text[i]
        if c == "'" or text.startswith("$'", i):
            start = i + (2 if c == "$" else 1)
            end = self.single_end(start, ansi=c == "$")
            self.note(start, end, "single")
            return end + 1, False
        if c == '"':
            self.stack.append("double")
            return i + 1, False
        if c == "#" and word_start:
            end = text.find("\n", i)
            end = len(text) if end < 0 else end
            self.note(i, end, "comment")
            return end, True
        if text.startswith("<<", i) and not text.startswith("<<<", i):
            return self.heredoc_operator(i + 2), False
        past = self.opening(i)
        if past:
            return past, False
        if c == "(":
            self.stack.append("paren")
        elif c == ")" and self.stack[-1] in ("sub", "paren"):
            self.stack.pop()
        return i + 1, c in self.BREAKS

    def single_end(self, i: int, ansi: bool) -> int:
        text = self.text
        while i < len(text) and text[i] != "'":
            i += 2 if ansi and text[i] == "\\" else 1
        return min(i, len(text))

    def heredoc_operator(self, i: int) -> int:
        text = self.text
        strip = text.startswith("-", i)
        i += strip
        while i < len(text) and text[i] in " \t":
            i += 1
        start = i
        while i < len(text) and text[i] not in " \t\n;&|()<>":
            if text[i] in "'\"":
                close = text.find(text[i], i + 1)
                i = len(text) if close < 0 else close + 1
            else:
                i += 2 if text[i] == "\\" else 1
        word = text[start:i]
        quoted = any(q in word for q in "'\"\\")
        delim = re.sub(r"[\"'\\]", "", self.mark.sub("", word))
        if delim:
            self.pending.append((delim, quoted, strip))
        return i

    def heredocs(self, i: int) -> int:
        """The bodies of the here-documents opened on the line that just ended."""
        text = self.text
        for delim, quoted, strip in self.pending:
            while i < len(text):
                end = text.find("\n", i)
                end = len(text) if end < 0 else end
                line = text[i:end]
                if (line.lstrip("\t") if strip else line) == delim:
                    i = end + 1
                    break
                self.note(i, end, "heredoc-quoted" if quoted else "heredoc")
                i = end + 1
        self.pending = []
        return i
