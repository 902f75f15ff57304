"""What every command checks before its first episode: the model settings of its context.

``policies.preflight`` knows what a loadable adapter, base model and server look like;
this module knows which of a :class:`graph.context.Context`'s roles run the chat model
and which flag set each setting, so the one-line error names the flag the user typed.
"""

from __future__ import annotations

from typing import Iterable

from graph.context import Context, llm_roles

ADAPTER_FLAGS = {"reasoner": "--reasoner-adapter", "optimizer": "--optimizer-adapter"}


def check_context_models(ctx: Context, roles: Iterable[str] | None = None, *,
                         adapters: dict[str, str | None] | None = None) -> None:
    """Fail fast (``InputError`` naming the flag) when the model settings of ``roles``
    (default: :func:`llm_roles`) cannot work. An adapter flag given explicitly is checked
    even for a role that will not run: a typo is a typo. ``adapters`` overrides the
    context's adapter per role (LLM methods of ``dara bench`` choose their own)."""
    from policies.preflight import check_adapter, check_model_settings

    roles = list(llm_roles(ctx) if roles is None else roles)
    chosen = {"reasoner": ctx.reasoner_adapter, "optimizer": ctx.optimizer_adapter, **(adapters or {})}
    for role, flag in ADAPTER_FLAGS.items():
        if role not in roles and ctx.backend != "openai":
            check_adapter(flag, getattr(ctx, f"{role}_adapter"))
    if roles:
        check_model_settings(ctx.backend, ctx.base, {r: (ADAPTER_FLAGS[r], chosen[r]) for r in roles},
                             base_url=ctx.base_url,
                             base_url_flag="--base-url" if ctx.base_url else "--backend openai")
