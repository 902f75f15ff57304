"""``vllm`` backend: a langchain-core chat model over vLLM's offline engine, one
``LoRARequest`` per role.

The engine lives in a worker subprocess (:mod:`policies.backends.vllm_engine`); model
and adapter directories are prepared by :mod:`policies.backends.vllm_setup`.

Text contract (shared with the other backends): ``generate_texts(messages_batch,
adapter, max_new_tokens, temperature, top_p, seed, stop) -> list[str]``; the chat
template is the tokenizer's (``LLM.chat``), the completion stops at ``</answer>`` and
the stop string is kept in the text. Every call may carry its own settings
(``invoke(messages, adapter="optimizer", max_new_tokens=20)``, ``.bind(...)``,
``.batch(...)``). Concurrent calls (one LangGraph thread per episode) are gathered by a
:class:`~policies.backends.coalescer.RequestCoalescer` into one engine call per
adapter, answer-token cap, sampling setting and stop strings; sampled requests keep
their own seeds, so coalescing never changes a text.
"""

from __future__ import annotations

import os
import threading
from typing import Any, Mapping, Sequence

from langchain_core.messages import AIMessage, BaseMessage
from pydantic import ConfigDict, Field, PrivateAttr

from policies.backends.coalescer import RequestCoalescer
from policies.backends.common import DEFAULT_STOP, BatchedChatModel, call_params, explicit_kwargs
from policies.backends.vllm_engine import VLLMEngine, close_all, get_engine

__all__ = ["VLLMChatModel", "VLLMEngine", "close_all", "get_engine", "make_chat_model"]

_COALESCER_LOCK = threading.Lock()


class VLLMChatModel(BatchedChatModel):
    """A langchain-core chat model over vLLM's offline engine with named LoRA adapters.

    ``adapter`` picks the role (a name in ``adapters``, an adapter dir, or ``None`` for
    the base model); override per call with ``invoke(..., adapter="reasoner")`` or
    :meth:`with_adapter`. ``batch`` sends all inputs to the engine in ONE call (vLLM
    batches them), unlike ``BaseChatModel.batch``'s thread pool.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    base: str = Field(default="embedded", description="'embedded', 'tiny-random' or an HF model dir.")
    adapters: dict[str, str] = Field(default_factory=dict, description="Adapter name -> PEFT LoRA dir.")
    adapter: str | None = Field(default=None, description="Adapter used by default (None = base).")
    max_new_tokens: int = Field(default=64, ge=1)
    temperature: float = Field(default=0.0, ge=0.0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    seed: int | None = Field(default=0, description="Seed of request i is seed + i.")
    stop: list[str] = Field(default_factory=lambda: list(DEFAULT_STOP),
                            description="Stop strings kept at the end of the text (like local's stop_at). "
                                        "LangChain stop= strings cut the text before them.")
    batch_size: int = Field(default=64, ge=1, description="Most conversations in one coalesced engine call.")
    coalesce: bool = Field(default=True, description="Gather concurrent calls into one engine call.")
    coalesce_ms: float = Field(default=50.0, ge=0.0, description="How long the coalescer waits for more requests.")
    engine_kwargs: dict[str, Any] = Field(default_factory=dict,
                                          description="Extra vllm.LLM / VLLMEngine arguments.")

    _engine: VLLMEngine | None = PrivateAttr(default=None)
    _coalescer: RequestCoalescer | None = PrivateAttr(default=None)

    @property
    def _llm_type(self) -> str:
        return "dara-vllm"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"base": self.base, "adapter": self.adapter, "max_new_tokens": self.max_new_tokens,
                "temperature": self.temperature, "seed": self.seed}

    @property
    def engine(self) -> VLLMEngine:
        if self._engine is None or not self._engine.alive:
            self._engine = get_engine(self.base, self.adapters, **self.engine_kwargs)
        return self._engine

    def with_adapter(self, adapter: str | None) -> "VLLMChatModel":
        m = self.model_copy(update={"adapter": adapter})
        m._engine = self._engine
        m._coalescer = self._get_coalescer()
        return m

    def close(self) -> None:
        """Shut this model's engine down (other models sharing it restart it on use)."""
        if self._engine is not None:
            self._engine.close()
            self._engine = None

    # ---- generation ----------------------------------------------------------------------
    def _key(self, kwargs: Mapping[str, Any]) -> tuple:
        """Coalescing key of a call: its settings without the seed, plus the kept stops."""
        p = call_params(self, kwargs)
        stops = kwargs.get("stop_at")
        fmt = kwargs.get("answer_format")
        return (p.adapter, p.max_new_tokens, p.temperature, p.top_p,
                tuple(self.stop if stops is None else stops),
                None if fmt is None else (int(fmt[0]), bool(fmt[1]))), p.seed

    def _run(self, kwargs: Mapping[str, Any], conversations: Sequence[Any]) -> list[dict]:
        """Engine outputs for ``conversations``; request i of a sampled call gets seed + i."""
        key, seed = self._key(kwargs)
        items = [(c, None if seed is None else seed + i) for i, c in enumerate(conversations)]
        if not self.coalesce or not items:
            return self._engine_call(key, items)
        return self._get_coalescer().run(key, items)

    def _engine_call(self, key: tuple, items: list) -> list[dict]:
        adapter, max_new_tokens, temperature, top_p, stop, answer_format = key
        return self.engine.generate([c for c, _ in items], adapter=adapter, max_new_tokens=max_new_tokens,
                                    temperature=temperature, top_p=top_p, seed=[s for _, s in items],
                                    stop=list(stop), answer_format=answer_format)

    def _get_coalescer(self) -> RequestCoalescer:
        if self._coalescer is None:
            with _COALESCER_LOCK:
                if self._coalescer is None:
                    self._coalescer = RequestCoalescer(self._engine_call, self.batch_size,
                                                       self.coalesce_ms / 1000.0, name="dara-vllm-coalescer")
        return self._coalescer

    def generate_texts(self, messages_batch: Sequence[Sequence[BaseMessage | Mapping[str, str]]],
                       adapter: str | None = None, max_new_tokens: int | None = None,
                       temperature: float | None = None, top_p: float | None = None,
                       seed: int | None = None, stop: Sequence[str] | None = None,
                       answer_format: tuple[int, bool] | None = None) -> list[str]:
        """Batched completions, one text per conversation, in ONE engine call.

        Same contract as ``LocalChatModel.generate_texts``: ``adapter=None`` means the
        base model here (the ``adapter`` field is the default for LangChain calls only);
        ``None`` settings take the model's fields; texts end at ``</answer>`` (kept) or
        EOS. ``stop`` replaces the kept stop strings (default ``self.stop``).
        ``answer_format=(T, signed)`` decodes exactly T numbers in the answer tags (vLLM's
        structured outputs with :func:`policies.constrained.answer_pattern`), as the
        ``local`` backend does.
        """
        kw = explicit_kwargs(adapter, max_new_tokens=max_new_tokens, temperature=temperature,
                             top_p=top_p, seed=seed, stop_at=stop, answer_format=answer_format)
        return [o["text"] for o in self._run(kw, list(messages_batch))]

    def _complete(self, conversations: list[list[BaseMessage]], kwargs: dict[str, Any]) -> list[AIMessage]:
        model_name = kwargs.get("adapter", self.adapter) or self.base
        return [AIMessage(content=o["text"], response_metadata={
            "finish_reason": o["finish_reason"], "model_name": model_name,
            "token_usage": {"completion_tokens": o["n_tokens"]}}) for o in self._run(kwargs, conversations)]


def make_chat_model(base: str | os.PathLike = "embedded",
                    adapters: Mapping[str, str | os.PathLike] | None = None,
                    **kw: Any) -> VLLMChatModel:
    """``VLLMChatModel`` for ``base`` + named adapters; engine settings go in ``engine_kwargs``."""
    fields = set(VLLMChatModel.model_fields)
    engine_kwargs = dict(kw.pop("engine_kwargs", {}) or {})
    engine_kwargs.update({k: kw.pop(k) for k in list(kw) if k not in fields})
    return VLLMChatModel(base=str(base), adapters={k: str(v) for k, v in (adapters or {}).items()},
                         engine_kwargs=engine_kwargs, **kw)
