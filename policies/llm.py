"""``LLMPolicy``: a chat model (any langchain-core chat model) behind the Policy interface.

Each request is encoded with :mod:`policies.prompts` (the role's encoding), all requests
go to the backend in ONE batched call, and each answer is decoded back into task units.
Backends with ``generate_texts`` (local, vllm, openai) are asked for at most
``prompts.answer_token_cap(T, encoding)`` new tokens, so long answers are not truncated
by a fixed cap; an explicit ``max_new_tokens`` keyword overrides it.
Bad model text never raises: the decision carries ``allocation=None`` and a typed parse
error; the raw text is always kept in ``Decision.text``. A backend failure (e.g. a
server down) also does not kill the batch: every decision of that call records
``error="backend: ..."``.
"""

from __future__ import annotations

from typing import Any, Sequence

from policies.base import Decision, DecisionRequest
from policies.prompts import DELTA_ENCODINGS, answer_token_cap, decode, encode, resolve_encoding


class LLMPolicy:
    """A role (``reasoner`` / ``optimizer``) answered by a chat model.

    ``chat_model`` is any langchain-core chat model. Backends with a
    ``generate_texts(prompts, adapter=...)`` method (the ``local`` backend) are called
    directly with the adapter named ``adapter`` (default: the role, when the backend has
    an adapter of that name); others go through ``chat_model.batch``.
    """

    def __init__(self, role: str, chat_model: Any, encoding: str | None = None,
                 name: str | None = None, adapter: str | None = "auto",
                 constrained: bool | str = "auto", **gen_kw: Any):
        self.role = role
        # Constrained decoding of the answer format (policies.constrained): on by default
        # for backends that support it (local); the model still picks every digit.
        if constrained == "auto":
            import inspect

            gt = getattr(chat_model, "generate_texts", None)
            constrained = gt is not None and "answer_format" in inspect.signature(gt).parameters
        self.constrained = bool(constrained)
        self.encoding = resolve_encoding(role, encoding)
        self.chat_model = chat_model
        self.adapter = self._pick_adapter(adapter)
        self.gen_kw = gen_kw
        self.name = name or f"llm-{role}"

    def _pick_adapter(self, adapter: str | None) -> str | None:
        if adapter != "auto":
            return adapter
        loaded = getattr(self.chat_model, "adapters", None)
        if isinstance(loaded, dict) and self.role in loaded:
            return self.role
        return getattr(self.chat_model, "adapter", None)

    def messages(self, request: DecisionRequest) -> list[dict[str, str]]:
        return encode(request, self.encoding)

    def token_cap(self, periods: list[int]) -> int:
        """New-token cap of one backend call: ``max_new_tokens`` if given, else the
        largest :func:`policies.prompts.answer_token_cap` of the call's answers."""
        if self.gen_kw.get("max_new_tokens") is not None:
            return int(self.gen_kw["max_new_tokens"])
        return max(answer_token_cap(T, self.encoding) for T in periods)

    def _texts(self, prompts: list[list[dict[str, str]]], periods: list[int] | None = None) -> list[str]:
        cm = self.chat_model
        if hasattr(cm, "generate_texts"):
            kw = dict(self.gen_kw)
            if periods:
                kw["max_new_tokens"] = self.token_cap(periods)
            if self.constrained and periods is not None:
                # one call per answer length T (usually a single group)
                out: list[str | None] = [None] * len(prompts)
                signed = self.encoding in DELTA_ENCODINGS
                for T in sorted(set(periods)):
                    idx = [i for i, p in enumerate(periods) if p == T]
                    texts = cm.generate_texts([prompts[i] for i in idx], adapter=self.adapter,
                                              answer_format=(T, signed),
                                              **{**kw, "max_new_tokens": self.token_cap([T])})
                    for i, t in zip(idx, texts):
                        out[i] = t
                return [o or "" for o in out]
            return list(cm.generate_texts(prompts, adapter=self.adapter, **kw))
        kw = dict(self.gen_kw)
        if self.adapter is not None:
            kw["adapter"] = self.adapter
        outs = cm.batch(prompts, **kw) if kw else cm.batch(prompts)
        return [o.content if hasattr(o, "content") else str(o) for o in outs]

    def propose(self, requests: Sequence[DecisionRequest]) -> list[Decision]:
        requests = list(requests)
        if not requests:
            return []
        for r in requests:
            if r.role != self.role:
                raise ValueError(f"{self.name}: request role {r.role!r} != policy role {self.role!r}")
        prompts = [self.messages(r) for r in requests]
        try:
            texts = self._texts(prompts, [r.task.periods for r in requests])
        except Exception as e:  # noqa: BLE001 - recorded per decision, the batch survives
            msg = f"backend: {type(e).__name__}: {e}"
            return [Decision(None, text="", error=msg, meta={"error_code": "backend", "policy": self.name})
                    for _ in requests]
        out = []
        for r, t in zip(requests, texts):
            d = decode(t if isinstance(t, str) else str(t), r, self.encoding)
            d.meta.update(policy=self.name, role=self.role, adapter=self.adapter)
            out.append(d)
        return out
