"""Jinja2 for playbooks: strict (an undefined name is an error), and two flavours.

- `render`: plain text, for templates and most arguments.
- `render_shell`: every `{{ value }}` is shell-quoted on output, so a playbook's `shell:` line
  can interpolate variables without ever letting their content run.
"""

from __future__ import annotations

import functools
import re
import shlex
from typing import Any

import jinja2
import jinja2.sandbox

from drfleet.errors import ConfigError


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


TEXT = _env()
SHELL = _env(lambda v: shlex.quote(str(v)))


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


def quoted_placeholder(text: str) -> str:
    """The first `{{ ... }}` of a shell template that sits inside quotes, or "". Each value
    is quoted on rendering, so `'{{ x }}'` becomes `''$(id)''`: the quotes cancel and the
    value runs. Outside quotes it is one safe word."""
    quote = ""
    i = 0
    while i < len(text):
        if text.startswith("{{", i):
            end = text.find("}}", i)
            end = len(text) if end < 0 else end + 2
            if quote:
                return text[i:end]
            i = end
            continue
        c = text[i]
        if c == "\\" and quote != "'":
            i += 2
            continue
        if quote and c == quote:
            quote = ""
        elif not quote and c in "'\"":
            quote = c
        i += 1
    return ""


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
        single = _SINGLE.match(value)
        if single and not shell:
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
