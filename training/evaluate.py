"""``dara train eval``: a quick, direct check of one adapter on held-out environments.

One decision per environment (no graph): the Reasoner's round-1 answer from the few-shot
history, or the Optimizer's answer on a chained window (rounds 2..K, same recipe as
training but a held-out seed). Answers come from ``policies.llm.LLMPolicy`` on the local
backend, exactly as the graph asks for them: the answer format is enforced
(``policies.constrained``) and the token cap follows T, so ``parse_error_rate`` is the
rate the graph sees. ``constrained=False`` lets the model write freely instead: the
rate then says how often the adapter keeps the format by itself, which is what an
OpenAI-compatible server (no constraint) gets (``benchmarks/format_check.py``). Answers
are projected onto the budget set (``tools.budget.project``)
and scored by value regret (``tools.metrics.regret``). Unparseable answers fall back to
the current plan (the last record shown) and count in ``parse_error_rate`` (``not_a_change_rate`` is the part of it whose format
was right: a signed answer that restates an allocation). The numeric
teacher and "keep the current plan" are reported beside it. The full per-round
comparison is ``dara bench``.
"""

from __future__ import annotations

import time

import numpy as np


def evaluate(role: str = "reasoner", adapter: str | None = None, base: str = "embedded",
             encoding: str | None = None, family: str = "quadratic", n: int = 64, seed: int = 12345,
             batch_size: int = 32, max_new_tokens: int | None = None, bf16: bool = True,
             teacher: str = "local-model", periods: int | None = None, noise: float | None = None,
             constrained: bool = True, chat=None) -> dict:
    """Regret and parse-error rate of ``adapter`` (``None`` = the base model) for ``role``.

    ``max_new_tokens`` ``None`` = the graph's cap (``policies.prompts.answer_token_cap``).
    ``periods``/``noise`` override the held-out tasks' slot count and feedback noise
    (data families keep their own T). ``chat`` reuses a loaded ``LocalChatModel`` whose
    adapter for ``role`` is ``adapter``. For hint-prompt adapters ``hint_copy_rate``
    is the share of parsed answers equal to the prompt's hint to its two decimals.
    """
    from policies.backends.local import LocalChatModel
    from policies.llm import LLMPolicy
    from policies.adapter_meta import encoding_for
    from tools.budget import project
    from tools.metrics import regret
    from policies.observations import copies_hint
    from policies.prompts import HINT_ENCODINGS, error_code
    from training.rollouts import heldout_prompts

    enc = encoding_for(role, adapter, encoding)
    from training.config import RolloutConfig

    over = {k: v for k, v in (("periods", periods), ("noise", noise)) if v is not None}
    p = heldout_prompts(role, family=family, n=n, seed=seed, cfg=RolloutConfig(**over))
    env = p.envs[0].subset(p.env_row)
    if chat is None:
        chat = LocalChatModel(base=base, adapters={role: adapter} if adapter else {}, bf16=bf16,
                              batch_size=batch_size, coalesce=False)
    cap = {} if max_new_tokens is None else {"max_new_tokens": int(max_new_tokens)}
    policy = LLMPolicy(role, chat, encoding=enc, adapter=role if adapter else None,
                       constrained="auto" if constrained else False, **cap)
    t0 = time.time()
    decisions = policy.propose(p.requests)
    secs = time.time() - t0
    failed = [d for d in decisions if d.meta.get("error_code") == "backend"]
    if failed:  # a broken model is not a parse error
        raise RuntimeError(f"dara train eval: {failed[0].error}")
    texts = [d.text for d in decisions]
    current = p.win_alloc[:, -1]
    alloc, errors = current.copy(), []
    for i, d in enumerate(decisions):
        if d.allocation is None:
            errors.append(d.error)
        else:
            alloc[i] = d.allocation
    feasible = project(alloc, p.budget, p.lower, p.upper)
    reg = regret(env, feasible)
    reg_teacher = regret(env, p.teacher(teacher))
    reg_current = regret(env, current)
    copies = ([copies_hint(r, d) for r, d in zip(p.requests, decisions) if d.allocation is not None]
              if enc in HINT_ENCODINGS else [])
    return {
        "role": role, "encoding": enc, "adapter": adapter, "base": base, "family": family, "n": n,
        "regret": float(reg.mean()), "regret_median": float(np.median(reg)),
        "regret_teacher": float(reg_teacher.mean()), "regret_current_plan": float(reg_current.mean()),
        "parse_error_rate": len(errors) / max(1, n), "errors": errors[:5], "constrained": bool(constrained),
        # the format was right but the numbers restate an allocation (policies.prompts.not_a_change)
        "not_a_change_rate": sum(error_code(e) == "not_a_change" for e in errors) / max(1, n),
        "periods": int(p.requests[0].task.periods) if p.requests else None,
        "hint_copy_rate": float(np.mean(copies)) if copies else None,
        "seconds_generate": secs, "example": texts[0] if texts else None,
    }
