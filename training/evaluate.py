"""``dara train eval``: a quick, direct check of one adapter on held-out environments.

One decision per environment (no graph): the Reasoner's round-1 answer from the few-shot
history, or the Optimizer's answer on a chained window (rounds 2..K, same recipe as
training but a held-out seed). Answers are decoded with ``policies.prompts.decode``,
projected onto the budget set (``tools.budget.project``) and scored by value regret
(``tools.metrics.regret``). Unparseable answers fall back to the current plan (the last
record shown) and count in ``parse_error_rate``. The numeric teacher and "keep the
current plan" are reported beside it. The full per-round comparison is ``dara bench``.
"""

from __future__ import annotations

import time

import numpy as np


def evaluate(role: str = "reasoner", adapter: str | None = None, base: str = "embedded",
             encoding: str | None = None, family: str = "quadratic", n: int = 64, seed: int = 12345,
             batch_size: int = 32, max_new_tokens: int = 64, bf16: bool = True, teacher: str = "local-model") -> dict:
    from policies.backends.local import LocalChatModel
    from policies.prompts import decode, encode, resolve_encoding
    from tools.budget import project
    from tools.metrics import regret
    from training.rollouts import heldout_prompts

    enc = resolve_encoding(role, encoding)
    p = heldout_prompts(role, family=family, n=n, seed=seed)
    env = p.envs[0].subset(p.env_row)
    chat = LocalChatModel(base=base, adapters={role: adapter} if adapter else {}, bf16=bf16,
                          batch_size=batch_size, max_new_tokens=max_new_tokens, coalesce=False)
    t0 = time.time()
    texts = chat.generate_texts([encode(q, enc) for q in p.requests], adapter=role if adapter else None)
    secs = time.time() - t0
    current = p.win_alloc[:, -1]
    alloc, errors = current.copy(), []
    for i, (t, q) in enumerate(zip(texts, p.requests)):
        d = decode(t, q, enc)
        if d.allocation is None:
            errors.append(d.error)
        else:
            alloc[i] = d.allocation
    feasible = project(alloc, p.budget, p.lower, p.upper)
    reg = regret(env, feasible)
    reg_teacher = regret(env, p.teacher(teacher))
    reg_current = regret(env, current)
    return {
        "role": role, "encoding": enc, "adapter": adapter, "base": base, "family": family, "n": n,
        "regret": float(reg.mean()), "regret_median": float(np.median(reg)),
        "regret_teacher": float(reg_teacher.mean()), "regret_current_plan": float(reg_current.mean()),
        "parse_error_rate": len(errors) / max(1, n), "errors": errors[:5],
        "seconds_generate": secs, "example": texts[0] if texts else None,
    }
