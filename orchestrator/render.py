"""Rendering of the openssl configs from templates/: the only place cnf text is produced.

Every `{{ value }}` passes through `cnf_value` (Jinja's `finalize`), so no template can forget to escape:
OpenSSL's config parser treats `#` as a comment, `$` as variable expansion, `\\` and quotes (", ' and a
backtick) as escapes and a newline as a new statement (openssl-traps.md §4.1).
"""

from __future__ import annotations

import re
from functools import cache, lru_cache
from typing import Any

import jinja2

from orchestrator.resources import resource

_ESCAPED = str.maketrans({c: "\\" + c for c in "\\#$\"'`"})
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")  # C0, DEL and C1 controls (one search: issue 16)


# What nearly every value is (host names, addresses, numbers, section names): nothing to escape or refuse.
_PLAIN = re.compile(r"[A-Za-z0-9._:,@*=/+-]*")


def cnf_value(value: Any) -> str:
    text = str(value)
    if _PLAIN.fullmatch(text):
        return text  # one match instead of three passes, for ~10 values a node (issue 16)
    if _CONTROL.search(text):
        # Validation rejects these first; reaching here is a bug, not a user mistake.
        raise ValueError(f"control character in a config value: {text!r}")
    if text != text.strip():
        raise ValueError(f"leading or trailing white space in a config value: {text!r}")
    return text.translate(_ESCAPED)


@cache
def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(resource("templates"))),
        undefined=jinja2.StrictUndefined,
        finalize=cnf_value,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        auto_reload=False,  # the templates are the package's: no stat of the file at every render (issue 16)
        autoescape=False,  # noqa: S701 - the output is an openssl config, escaped by cnf_value, not HTML
    )


def render(template: str, **context: Any) -> str:
    """`template` rendered with `context`, whose values are hashable (tuples, frozen dataclasses): the same
    config is asked for twice in a run (once to inspect the folder, once to plan), and rendered once."""
    return _render(template, tuple(sorted(context.items())))


# Bounded: a node's or client's config is asked for again only by a second build, which takes the first
# one's task instead (plan._Made); unbounded, the cache kept every node's context for the process' life,
# ~0.8 KB a node (issue 16: peak memory). A CA's config pushed out by the nodes' is rendered again: once.
@lru_cache(maxsize=64)
def _render(template: str, context: tuple[tuple[str, Any], ...]) -> str:
    return _environment().get_template(template).render(dict(context))
