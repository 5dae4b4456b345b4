"""Jinja2 for playbooks: strict (an undefined name is an error), and two flavours.

- `render`: plain text, for templates and most arguments.
- `render(..., shell=True)`, for a `shell:` or `unless:` line: the values never enter the
  line's text; it comes back as a ShellText whose `values` go into the line's environment
  (shellvalues says how, and why no placement can run them).
"""

from __future__ import annotations

import contextvars
import functools
import re
import secrets
import shlex
from typing import Any

import jinja2
import jinja2.nodes
import jinja2.sandbox

from drfleet.errors import ConfigError
from drfleet.playbook import shellvalues


def _env(finalize: Any = None) -> jinja2.sandbox.ImmutableSandboxedEnvironment:
    env = jinja2.sandbox.ImmutableSandboxedEnvironment(
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        finalize=finalize,
        autoescape=False,
    )
    env.filters["quote"] = lambda v: shlex.quote(str(v))
    env.filters["bool"] = lambda v: str(v).strip().lower() in ("1", "true", "yes", "on")
    return env


# the values a shell line's `{{ }}` output, collected as it renders (per thread: hosts render
# side by side), each replaced in the text by a mark the reading of the line then resolves
_OUTPUT: contextvars.ContextVar[tuple[str, list[str]]] = contextvars.ContextVar("_OUTPUT")


def _collect(value: Any) -> str:
    nonce, values = _OUTPUT.get()
    values.append("" if value is None else str(value))
    return f"\x00{nonce}:{len(values) - 1}\x00"


TEXT = _env()
SHELL = _env(_collect)
SHELL.filters["quote"] = lambda v: v  # every value is passed as it is: `| quote` is implied

# what a shell line may hold besides text and `{{ }}`: anything else could put a value into
# the text without `{{ }}` (`{% filter replace('a', x) %}a{% endfilter %}`, a macro)
SHELL_STATEMENTS = (
    jinja2.nodes.Template,
    jinja2.nodes.Output,
    jinja2.nodes.TemplateData,
    jinja2.nodes.If,
    jinja2.nodes.For,
    jinja2.nodes.Assign,
)


class ShellText(str):
    """A rendered shell line: `${DRFLEET_ARG_n}` where each value was, the values apart."""

    values: tuple[str, ...] = ()

    @classmethod
    def of(cls, text: str, values: tuple[str, ...]) -> ShellText:
        out = cls(text)
        out.values = values
        return out


def is_template(value: Any) -> bool:
    return isinstance(value, str) and ("{{" in value or "{%" in value)


def check_expression(expr: str, where: str) -> None:
    try:
        TEXT.compile_expression(expr)
    except jinja2.TemplateSyntaxError as exc:
        raise ConfigError(
            f"`when: {expr}` does not parse: {exc.message}",
            where=where,
            fix="write a Jinja2 expression, e.g. `when: facts.gpus | length > 0`",
        ) from None


def check_template(text: str, where: str) -> None:
    try:
        TEXT.parse(text)
    except jinja2.TemplateSyntaxError as exc:
        raise ConfigError(
            f"template error: {exc.message} (template line {exc.lineno})", where=where
        ) from None


def check_shell(text: str, where: str) -> None:
    """A shell line's template, checked when the playbook loads: statements only of
    SHELL_STATEMENTS, and no `{{ }}` where the shell would not expand it or would evaluate it
    (the same reading runs again on the rendered line)."""
    _statements(text, where)
    nonce = secrets.token_hex(8)
    skeleton: list[str] = []
    exprs: list[list[str]] = []
    inside = False
    for _line, kind, value in SHELL.lex(text):
        if kind == "data":
            skeleton.append(value)
        elif kind == "variable_begin":
            inside = True
            exprs.append([])
            skeleton.append(f"\x00{nonce}:{len(exprs) - 1}\x00")
        elif kind == "variable_end":
            inside = False
        elif inside and kind != "whitespace":
            exprs[-1].append(value)
    names = ["{{ " + " ".join(e) + " }}" for e in exprs]
    _refuse(_placed("".join(skeleton), nonce), names, where)


def _statements(text: str, where: str) -> None:
    try:
        tree = SHELL.parse(text)
    except jinja2.TemplateSyntaxError as exc:
        raise ConfigError(f"template error: {exc.message}", where=where) from None
    for node in tree.find_all(jinja2.nodes.Stmt):
        if not isinstance(node, SHELL_STATEMENTS):
            raise ConfigError(
                f"{{% {type(node).__name__.lower()} %}} in a shell line: only {{{{ }}}}, "
                "{% if %}, {% for %} and {% set x = ... %} may shape one",
                where=where,
                fix="compute the value into a variable and place it with {{ }}",
            )


def _placed(text: str, nonce: str) -> dict[int, str]:
    return shellvalues.contexts(text, re.compile(f"\x00{nonce}:([0-9]+)\x00"))


def _refuse(where_each: dict[int, str], names: list[str], where: str) -> None:
    for i in sorted(where_each):
        context = where_each[i]
        if context in shellvalues.REFUSED:
            what, fix = shellvalues.REFUSED[context]
            name = names[i] if i < len(names) else f"value {i + 1}"
            raise ConfigError(f"{name} sits {what}", where=where, fix=fix.replace("{x}", name))


def render_shell(text: str, context: dict[str, Any], where: str) -> ShellText:
    _statements(text, where)
    nonce = secrets.token_hex(8)
    token = _OUTPUT.set((nonce, []))
    try:
        out = _template(text, True).render(**context)
        values = _OUTPUT.get()[1]
    except jinja2.UndefinedError as exc:
        raise ConfigError(f"template: {exc.message}", where=where) from None
    except jinja2.TemplateError as exc:
        raise ConfigError(f"template: {exc}", where=where) from None
    finally:
        _OUTPUT.reset(token)
    mark = re.compile(f"\x00{nonce}:([0-9]+)\x00")
    placed = _placed(out, nonce)
    _refuse(placed, [], where)

    def ref(m: re.Match[str]) -> str:
        i = int(m.group(1))
        return shellvalues.reference(i + 1, placed.get(i, "word"))

    return ShellText.of(mark.sub(ref, out), tuple(values))


@functools.lru_cache(maxsize=4096)
def _expression(expr: str) -> Any:
    return TEXT.compile_expression(expr, undefined_to_none=False)


@functools.lru_cache(maxsize=4096)
def _template(text: str, shell: bool) -> jinja2.Template:
    return (SHELL if shell else TEXT).from_string(text)


def evaluate(expr: str, context: dict[str, Any], where: str) -> Any:
    try:
        return _expression(expr)(**context)
    except jinja2.UndefinedError as exc:
        raise ConfigError(f"`{expr.strip()}`: {exc.message}", where=where) from None
    except jinja2.TemplateError as exc:
        raise ConfigError(f"`{expr.strip()}`: {exc}", where=where) from None


_SINGLE = re.compile(r"^\s*\{\{(?P<expr>(?:(?!\}\}).)*)\}\}\s*$", re.S)


def render(value: Any, context: dict[str, Any], where: str, *, shell: bool = False) -> Any:
    """Renders every template string inside value (lists and dicts walked). A string that is
    one `{{ expression }}` and nothing else gives the expression's value itself (a list stays
    a list), as in Ansible."""
    if isinstance(value, str):
        if not is_template(value):
            return value
        if shell:
            return render_shell(value, context, where)
        single = _SINGLE.match(value)
        if single:
            return evaluate(single.group("expr"), context, where)
        try:
            return _template(value, shell).render(**context)
        except jinja2.UndefinedError as exc:
            raise ConfigError(f"template: {exc.message}", where=where) from None
        except jinja2.TemplateError as exc:
            raise ConfigError(f"template: {exc}", where=where) from None
    if isinstance(value, list):
        return [render(v, context, where, shell=shell) for v in value]
    if isinstance(value, dict):
        return {k: render(v, context, where, shell=shell) for k, v in value.items()}
    return value
