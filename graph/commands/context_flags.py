"""Command-line flags generated from :class:`graph.context.Context`, and back.

``dara run``, ``dara allocate`` and ``dara bench`` each expose a subset of the context's
fields as flags; generating them from the dataclass (``tools.config_flags.add_flags``)
keeps names, defaults, choices and help text identical to what Studio and the Python API
see. Each command picks its fields and may rename one or change its default (``dara run``
calls ``max_rounds`` ``--rounds``, ``dara bench`` defaults it to 10).
"""

from __future__ import annotations

import argparse
from dataclasses import fields
from typing import Any, Iterable

from graph.context import Context
from tools.config_flags import add_flags

MODEL_FIELDS = ("backend", "base", "base_url", "reasoner_adapter", "optimizer_adapter", "reasoner_encoding",
                "optimizer_encoding", "temperature", "resample")
"""The fields that choose and configure the chat model of 'llm' policies."""
POLICY_FIELDS = ("reasoner", "optimizer")
ROUNDS_FLAGS = ["--rounds", "--max-rounds"]
"""``max_rounds`` is ``--rounds`` on every command (``--max-rounds`` is an alias)."""


def add_context_flags(parser: argparse.ArgumentParser, only: Iterable[str], *,
                      defaults: dict[str, Any] | None = None, helps: dict[str, str] | None = None,
                      names: dict[str, list[str]] | None = None) -> None:
    """Add a flag per context field in ``only`` (defaults shown and applied)."""
    only = tuple(only)
    known = {f.name for f in fields(Context)}
    unknown = sorted(set(only) - known)
    if unknown:
        raise ValueError(f"not Context fields: {', '.join(unknown)}")
    add_flags(parser, Context, only=only, defaults=dict(defaults or {}), helps=helps, names=_flag_names(names))


def _flag_names(names: dict[str, list[str]] | None) -> dict[str, list[str]]:
    """Fields whose flags are not ``--<field-name>``: ``max_rounds`` everywhere, plus ``names``."""
    return {"max_rounds": ROUNDS_FLAGS, **(names or {})}


def context_from_args(args: argparse.Namespace, only: Iterable[str], *,
                      names: dict[str, list[str]] | None = None, **fixed: Any) -> Context:
    """The :class:`Context` of the parsed flags in ``only``, with ``fixed`` values on top.

    A value the context rejects is reported with the flag the user typed
    (``--window 0: must be an integer >= 1``), not the field's name; ``names`` are the
    renamed flags given to :func:`add_context_flags`."""
    import re

    from tools.cli_errors import InputError

    values = {name: getattr(args, name) for name in only}
    try:
        return Context.from_dict({**values, **fixed})
    except ValueError as e:
        m = re.match(r"context\.(\w+)(?: = .*?[:;])? (.*)", str(e))
        if m is None or m.group(1) not in values:
            raise
        name = m.group(1)
        flag = _flag_names(names).get(name, ["--" + name.replace("_", "-")])[0]
        raise InputError(flag, values[name], re.sub(r", got .*$", "", m.group(2))) from None
