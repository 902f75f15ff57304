"""``LLMPolicy``: a chat model (any langchain-core chat model) behind the Policy interface.

Each request is encoded with :mod:`policies.prompts` (the role's encoding), all requests
go to the backend in ONE batched call, and each answer is decoded back into task units.
Backends with ``generate_texts`` (local, vllm, openai) are asked for at most
``prompts.answer_token_cap(T, encoding)`` new tokens, so long answers are not truncated
by a fixed cap; an explicit ``max_new_tokens`` keyword overrides it.
Bad model text never raises: the decision carries ``allocation=None`` and a typed parse
error; the raw text is always kept in ``Decision.text``. With ``resample=n`` an answer the
decoder rejects is asked for again, sampling (``RESAMPLE_TEMPERATURE``, seeds 1..n after
the policy's own seed, if any) until one decodes: a greedy answer that restates the allocation instead of a change is often a
single confident token path the model leaves at another sample. The rejected answers
stay in ``Decision.meta["rejected_answers"]``; nothing is hidden. A backend failure (e.g. a
server down) also does not kill the batch: every decision of that call records
``error="backend: ..."``.
"""

from __future__ import annotations

from typing import Any, Sequence

from policies.base import Decision, DecisionRequest
from policies.prompts import DELTA_ENCODINGS, answer_token_cap, decode, encode, resolve_encoding

RESAMPLE_TEMPERATURE = 0.7
"""Sampling temperature of a resample after a rejected answer (seeds 1, 2, ... in turn)."""


class LLMPolicy:
    """A role (``reasoner`` / ``optimizer``) answered by a chat model.

    ``chat_model`` is any langchain-core chat model. Backends with a
    ``generate_texts(prompts, adapter=...)`` method (the ``local`` backend) are called
    directly with the adapter named ``adapter`` (default: the role, when the backend has
    an adapter of that name); others go through ``chat_model.batch``.
    """

    def __init__(self, role: str, chat_model: Any, encoding: str | None = None,
                 name: str | None = None, adapter: str | None = "auto",
                 constrained: bool | str = "auto", resample: int = 0, **gen_kw: Any):
        self.role = role
        if isinstance(resample, bool) or not isinstance(resample, int) or resample < 0:
            raise ValueError(f"resample must be an integer >= 0, got {resample!r}")
        # only backends that take a temperature and seed per call can be asked again
        self.resample = resample if hasattr(chat_model, "generate_texts") else 0
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

    def _texts(self, prompts: list[list[dict[str, str]]], periods: list[int] | None = None,
               **sampling: Any) -> list[str]:
        cm = self.chat_model
        if hasattr(cm, "generate_texts"):
            kw = {**self.gen_kw, **sampling}
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
        out = [decode(t if isinstance(t, str) else str(t), r, self.encoding) for r, t in zip(requests, texts)]
        self._resample_rejected(requests, prompts, out)
        for d in out:
            d.meta.update(policy=self.name, role=self.role, adapter=self.adapter)
        return out

    def _resample_rejected(self, requests: list[DecisionRequest], prompts: list, out: list[Decision]) -> None:
        """Ask again, sampling, for every answer the decoder rejected (in place): seeds
        ``base + 1 .. base + self.resample`` (``base`` = the policy's own seed, else 0), one
        request per call, so the seed recorded is the seed the backend used (batched
        OpenAI-compatible and vLLM calls seed request i with ``seed + i``). A decision that
        decodes replaces the rejected one and lists the answers before it; one that never
        does keeps the first answer and lists every sample."""
        base = int(self.gen_kw.get("seed") or 0)
        rejected = {i: [] for i, d in enumerate(out) if d.allocation is None}
        for i in sorted(rejected):
            for seed in range(base + 1, base + self.resample + 1):
                try:
                    texts = self._texts([prompts[i]], [requests[i].task.periods],
                                        temperature=RESAMPLE_TEMPERATURE, seed=seed)
                except Exception as e:  # noqa: BLE001 - the first answer and its error stand
                    rejected[i].append({"text": "", "error": f"backend: {type(e).__name__}: {e}", "seed": seed})
                    break
                t = texts[0] if texts else ""
                d = decode(t if isinstance(t, str) else str(t), requests[i], self.encoding)
                if d.allocation is None:
                    rejected[i].append({"text": d.text, "error": d.error, "seed": seed})
                    continue
                first = out[i]
                d.meta["rejected_answers"] = [{"text": first.text, "error": first.error, "seed": None},
                                              *rejected.pop(i)]
                d.meta["resample_seed"] = seed
                out[i] = d
                break
        for i, tries in rejected.items():
            out[i].meta["rejected_answers"] = tries
