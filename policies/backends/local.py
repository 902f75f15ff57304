"""``local`` backend: a langchain-core chat model over transformers + PEFT.

One base model, named LoRA adapters on it (``reasoner``, ``optimizer``), loaded with
PEFT's multi-adapter API (``PeftModel.from_pretrained(..., adapter_name=)``,
``load_adapter``, ``set_adapter``; calls without an adapter run the plain base model
under ``disable_adapter()``). The adapter a call uses is a field or a bind kwarg::

    chat = LocalChatModel(base="embedded", adapters={"reasoner": dir1, "optimizer": dir2})
    chat.bind(adapter="optimizer").invoke(messages)
    chat.generate_texts([msgs1, msgs2, ...], adapter="reasoner")   # one batched generate

Throughput comes from batching: :meth:`LocalChatModel.generate_texts` pads on the left
and generates many prompts at once; ``batch`` sends all its inputs in one call; and
concurrent calls from many threads (one LangGraph thread per episode) are gathered by a
:class:`~policies.backends.coalescer.RequestCoalescer` for up to ``coalesce_ms`` (or
``batch_size`` requests) into one batched generate per adapter, answer-token cap,
answer format and sampling setting.

Generation is greedy unless ``temperature > 0``. With a ``seed`` each prompt is sampled
on its own with torch seeded before it, so its answer depends on the prompt and the seed
alone, not on the batch it came in (what a resample after a rejected answer needs to be
reproducible across runs and servers); without one, sampling is batched. Generation stops at ``</answer>`` (kept in
the text) or EOS, capped at ``max_new_tokens`` (default 64; a call may pass its own, e.g.
``invoke(messages, max_new_tokens=20)``). LangChain ``stop=`` strings are honoured the
LangChain way (text cut before them). ``bf16=True`` runs generation under CPU bfloat16
autocast. It pays off for training-sized batches, but for token-by-token decoding it was
*slower* on the 2-core AVX-512 box (4 prompts x 16 tokens: fp32 ~48 s vs autocast
~150 s, bf16 weights ~106 s, under a shared load), so it is off by default. What is on by
default where the CPU has native bf16 (``bf16_prefill=None``) is bf16 for the *prompt*
pass only, with the decode in fp32 over an upcast KV cache: 1.39x decisions/s at T = 6
with 64/64 identical greedy texts (docs/benchmarks.md); ``bf16_prefill=False`` turns it off.

Models are shared per process (``policies.models.load_base``); PEFT injects LoRA layers
into the base in place, so every chat model on the same base goes through one shared
``PeftModel`` (module registry) and one lock per base model; adapter directories get
internal names ``<role>_<hash>`` so different chat models can hold different adapters
for the same role.
"""

from __future__ import annotations

import hashlib
import threading
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Sequence

from langchain_core.messages import AIMessage, BaseMessage
from pydantic import ConfigDict, Field, PrivateAttr

from policies.backends import prefix_prefill
from policies.backends.coalescer import RequestCoalescer
from policies.backends.common import (
    ANSWER_STOP,
    BatchedChatModel,
    call_params,
    cut_at,
    explicit_kwargs,
    stop_criteria,
    to_message_dicts,
)

_REGISTRY_LOCK = threading.Lock()
_PEFT: dict[int, Any] = {}  # id(base model) -> PeftModel wrapping it
_GEN_LOCKS: dict[int, threading.RLock] = {}  # id(base model) -> generation lock


def _gen_lock(model) -> threading.RLock:
    with _REGISTRY_LOCK:
        return _GEN_LOCKS.setdefault(id(model), threading.RLock())


class LocalChatModel(BatchedChatModel):
    """Transformers + PEFT chat model with named LoRA adapters on one base model."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    base: str = Field("embedded", description="'embedded', 'tiny-random' or an HF model directory.")
    adapters: dict[str, str] = Field(default_factory=dict,
                                     description="Adapter name (role) -> PEFT LoRA directory.")
    adapter: str | None = Field(None, description="Adapter used by calls that do not name one (None = base model).")
    max_new_tokens: int = Field(64, ge=1, description="Cap on generated tokens per answer.")
    temperature: float = Field(0.0, ge=0.0, description="0 = greedy; > 0 samples.")
    top_p: float = Field(1.0, gt=0.0, le=1.0, description="Nucleus sampling mass.")
    seed: int | None = Field(None, description="Seed for sampled generation.")
    batch_size: int = Field(16, ge=1, description="Prompts per generate call.")
    coalesce: bool = Field(True, description="Gather concurrent single calls into batches.")
    coalesce_ms: float = Field(50.0, ge=0.0, description="How long the coalescer waits for more requests.")
    bf16: bool = Field(False, description="Generate under CPU bfloat16 autocast.")
    share_prefix: bool = Field(True, description="Prefill the batch's common prompt prefix (chat header, "
                               "system prompt) once instead of once per row (prefix_prefill).")
    bf16_prefill: bool | None = Field(None, description="Run the prompt (not the decode) under CPU bfloat16 "
                                      "autocast (prefix_prefill.generate); None = where the CPU has native "
                                      "bf16 (prefix_prefill.cpu_has_native_bf16).")
    stop_at: list[str] = Field(default_factory=lambda: [ANSWER_STOP],
                               description="Stop strings kept at the end of the text.")

    _model: Any = PrivateAttr(None)
    _tok: Any = PrivateAttr(None)
    _names: dict[str, str] = PrivateAttr(default_factory=dict)
    _coalescer: RequestCoalescer | None = PrivateAttr(None)
    _n_generate: int = PrivateAttr(0)

    # ---- construction ------------------------------------------------------------------
    def model_post_init(self, __context: Any) -> None:
        if self._model is None:
            from policies.models import load_base

            model, tok = load_base(self.base)
            self._attach(model, tok)

    @classmethod
    def from_model(cls, model, tokenizer, **kw) -> "LocalChatModel":
        """Wrap an existing model (e.g. a ``PeftModel`` being trained) without loading.

        With a ``PeftModel``, its adapter names are usable as ``adapter=`` directly.
        """
        obj = cls.model_construct(**{**cls._defaults(), **kw, "base": kw.get("base", "<object>")})
        obj._names = {}
        obj._coalescer = None
        obj._n_generate = 0
        obj._attach(model, tokenizer)
        return obj

    @classmethod
    def _defaults(cls) -> dict:
        return {k: f.get_default(call_default_factory=True)
                for k, f in cls.model_fields.items() if not f.is_required()}

    def _attach(self, model, tok) -> None:
        from peft import PeftModel

        self._tok = tok
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token
        if isinstance(model, PeftModel):
            self._model = model
            self._names = {n: n for n in model.peft_config}
        else:
            self._model = model
            with _REGISTRY_LOCK:
                if id(model) in _PEFT:
                    self._model = _PEFT[id(model)]
        for role, path in self.adapters.items():
            self.add_adapter(role, path)

    def add_adapter(self, name: str, path: str | Path) -> str:
        """Load the LoRA directory ``path`` as adapter ``name``; returns its internal name."""
        from peft import PeftModel

        path = Path(path).expanduser().resolve()
        if not (path / "adapter_config.json").is_file():
            raise FileNotFoundError(f"adapter {name!r}: {path} has no adapter_config.json")
        internal = f"{name}_{hashlib.sha1(str(path).encode()).hexdigest()[:8]}"
        base = self._model.get_base_model() if isinstance(self._model, PeftModel) else self._model
        with _gen_lock(base):
            with _REGISTRY_LOCK:
                pm = _PEFT.get(id(base))
                if pm is None and isinstance(self._model, PeftModel):
                    pm = self._model
                if pm is None:
                    pm = PeftModel.from_pretrained(base, str(path), adapter_name=internal)
                    pm.eval()
                    _PEFT[id(base)] = pm
                elif internal not in pm.peft_config:
                    pm.load_adapter(str(path), adapter_name=internal)
            self._model = pm
        self._names[name] = internal
        self.adapters = {**self.adapters, name: str(path)}
        return internal

    @property
    def tokenizer(self):
        return self._tok

    @property
    def model(self):
        return self._model

    @property
    def _llm_type(self) -> str:
        return "dara-local"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"base": self.base, "adapters": self.adapters, "adapter": self.adapter,
                "max_new_tokens": self.max_new_tokens, "temperature": self.temperature,
                "top_p": self.top_p}

    # ---- generation ----------------------------------------------------------------------
    def _key(self, kwargs: dict[str, Any]) -> tuple:
        """Coalescing key of a call: its :class:`CallParams` plus the answer format."""
        params = call_params(self, kwargs)
        if params.adapter is not None and params.adapter not in self._names:
            raise ValueError(f"adapter {params.adapter!r} is not loaded; loaded: {sorted(self._names)}")
        fmt = kwargs.get("answer_format")
        return (*params, None if fmt is None else (int(fmt[0]), bool(fmt[1])))

    def _run(self, key: tuple, prompts: list) -> list[str]:
        if not self.coalesce or not prompts:
            return self._generate_batch(key, prompts)
        # concurrent callers (one per episode thread) share batched generates
        return self._get_coalescer().run(key, prompts)

    def generate_texts(self, prompts: Sequence[Any], adapter: str | None = None,
                       max_new_tokens: int | None = None, temperature: float | None = None,
                       top_p: float | None = None, seed: int | None = None,
                       answer_format: tuple[int, bool] | None = None) -> list[str]:
        """Generate one completion per prompt (message list, dicts, or a string), batched.

        ``answer_format=(T, signed)`` constrains decoding to ``<answer>[...]</answer>``
        with exactly T numbers (``policies.constrained``); the model picks the digits.

        ``adapter=None`` means the base model here (the ``adapter`` field is the default
        for LangChain calls only); ``None`` settings take the model's fields. Texts end at
        ``</answer>`` or EOS.
        """
        key = self._key(explicit_kwargs(adapter, max_new_tokens=max_new_tokens, temperature=temperature,
                                        top_p=top_p, seed=seed, answer_format=answer_format))
        return self._run(key, list(prompts))

    def _complete(self, conversations: list[list[BaseMessage]], kwargs: dict[str, Any]) -> list[AIMessage]:
        return [AIMessage(content=t) for t in self._run(self._key(kwargs), conversations)]

    def _generate_batch(self, key: tuple, prompts: list) -> list[str]:
        if not prompts:
            return []
        import torch

        adapter, max_new, temp, top_p, seed, answer_format = key
        tok = self._tok
        texts = [tok.apply_chat_template(to_message_dicts(p), tokenize=False, add_generation_prompt=True)
                 for p in prompts]
        token_ids = [tok(t, add_special_tokens=False)["input_ids"] for t in texts]
        order = sorted(range(len(texts)), key=lambda i: len(token_ids[i]))  # less padding per chunk
        out: list[str | None] = [None] * len(texts)
        from peft import PeftModel

        model = self._model
        if not isinstance(model, PeftModel):
            # another chat model may have wrapped this shared base in a PeftModel since
            # (PEFT injects LoRA layers in place): go through it, adapters disabled
            with _REGISTRY_LOCK:
                model = _PEFT.get(id(model), model)
        base = model.get_base_model() if isinstance(model, PeftModel) else model
        gen_kw: dict[str, Any] = dict(max_new_tokens=max_new, pad_token_id=tok.pad_token_id)
        if temp > 0:
            gen_kw.update(do_sample=True, temperature=temp, top_p=top_p, top_k=0)
        else:
            gen_kw.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        if self.stop_at:
            gen_kw.update(stopping_criteria=stop_criteria(tok, self.stop_at))
        with _gen_lock(base):
            if isinstance(model, PeftModel):
                if adapter is None:
                    ctx = model.disable_adapter()
                else:
                    model.set_adapter(self._names[adapter])
                    ctx = nullcontext()
            else:
                ctx = nullcontext()
            amp = torch.autocast("cpu", dtype=torch.bfloat16) if self.bf16 else nullcontext()
            # a seeded sample is drawn one prompt at a time, the seed set before each: what a
            # prompt gets then depends on the prompt and the seed, not on its batch neighbours
            seeded = temp > 0 and seed is not None
            step = 1 if seeded else self.batch_size
            with ctx, amp, torch.inference_mode():
                for s in range(0, len(order), step):
                    idx = order[s: s + step]
                    if seeded:
                        torch.manual_seed(int(seed))
                    seqs = [token_ids[i] for i in idx]
                    kw_b = gen_kw
                    if answer_format is not None:
                        from transformers import LogitsProcessorList

                        from policies.constrained import AnswerFormatProcessor, answer_pattern

                        width = max(len(q) for q in seqs)  # both layouts are this wide
                        proc = AnswerFormatProcessor(tok, [answer_pattern(*answer_format)] * len(idx), width)
                        kw_b = {**gen_kw, "logits_processor": LogitsProcessorList([proc])}
                    gen, width = prefix_prefill.generate(model, seqs, tok.pad_token_id, self.share_prefix,
                                                             self._prefill_dtype(), **kw_b)
                    self._n_generate += 1
                    new = gen[:, width:]
                    for j, i in enumerate(idx):
                        t = tok.decode(new[j], skip_special_tokens=True)
                        out[i] = cut_at(t, self.stop_at, keep=True)
        return [o or "" for o in out]

    def _prefill_dtype(self):
        """bf16 for the prompt pass when asked, or by default on CPUs with native bf16:
        1.39x decisions/s at T = 6 with the same greedy texts (docs/benchmarks.md)."""
        import torch

        if self.bf16 or self.bf16_prefill is False:  # full autocast already, or off
            return None
        on = self.bf16_prefill or prefix_prefill.cpu_has_native_bf16()
        return torch.bfloat16 if on else None

    def _get_coalescer(self) -> RequestCoalescer:
        if self._coalescer is None:
            with _REGISTRY_LOCK:
                if self._coalescer is None:
                    self._coalescer = RequestCoalescer(self._generate_batch, self.batch_size,
                                                       self.coalesce_ms / 1000.0, name="dara-local-coalescer")
        return self._coalescer

    @property
    def generate_calls(self) -> int:
        """``model.generate`` calls made by this chat model (tests, benchmarks)."""
        return self._n_generate

    @property
    def coalesced_calls(self) -> int:
        """Batched generate rounds run by the coalescer so far."""
        return 0 if self._coalescer is None else self._coalescer.calls

    @property
    def coalescer(self) -> RequestCoalescer:
        """The request coalescer batching this model's concurrent calls: its ``sizes`` and
        ``spans`` say how full and how long each batch was; ``straggler_s`` is tunable."""
        return self._get_coalescer()


def make_chat_model(base: str = "embedded", adapters: dict[str, str] | None = None,
                    **kw: Any) -> LocalChatModel:
    """Backend factory used by :func:`policies.backends.make_chat_model`."""
    return LocalChatModel(base=str(base), adapters=dict(adapters or {}), **kw)
