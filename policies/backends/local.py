"""``local`` backend: a langchain-core chat model over transformers + PEFT.

One base model, named LoRA adapters on it (``reasoner``, ``optimizer``), loaded with
PEFT's multi-adapter API (``PeftModel.from_pretrained(..., adapter_name=)``,
``load_adapter``, ``set_adapter``; calls without an adapter run the plain base model
under ``disable_adapter()``). The adapter a call uses is a field or a bind kwarg::

    chat = LocalChatModel(base="embedded", adapters={"reasoner": dir1, "optimizer": dir2})
    chat.bind(adapter="optimizer").invoke(messages)
    chat.generate_texts([msgs1, msgs2, ...], adapter="reasoner")   # one batched generate

Throughput comes from batching: :meth:`LocalChatModel.generate_texts` pads on the left
and generates many prompts at once; ``batch`` goes straight to it; and concurrent
``invoke`` calls from many threads (one LangGraph thread per episode) are gathered by a
request coalescer for up to ``coalesce_ms`` (or ``batch_size`` requests) into one
batched generate per adapter and sampling setting.

Generation is greedy unless ``temperature > 0``. ``seed`` seeds torch before a sampled
generate (reproducible for the same batch). Generation stops at ``</answer>`` (kept in
the text) or EOS, capped at ``max_new_tokens`` (default 64). LangChain ``stop=`` strings
are honoured the LangChain way (text cut before them). ``bf16=True`` runs generation
under CPU bfloat16 autocast. It pays off for training-sized batches (DESIGN.md §4), but
for token-by-token decoding it was *slower* on the 2-core AVX-512 box (4 prompts x 16
tokens: fp32 ~48 s vs autocast ~150 s, bf16 weights ~106 s, under a shared load), so it
is off by default; outputs can also differ slightly from fp32.

Models are shared per process (``policies.models.load_base``); PEFT injects LoRA layers
into the base in place, so every chat model on the same base goes through one shared
``PeftModel`` (module registry) and one lock per base model; adapter directories get
internal names ``<role>_<hash>`` so different chat models can hold different adapters
for the same role.
"""

from __future__ import annotations

import hashlib
import threading
import time
from concurrent.futures import Future
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Sequence

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, convert_to_openai_messages
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import ConfigDict, Field, PrivateAttr

ANSWER_STOP = "</answer>"

_REGISTRY_LOCK = threading.Lock()
_PEFT: dict[int, Any] = {}  # id(base model) -> PeftModel wrapping it
_GEN_LOCKS: dict[int, threading.RLock] = {}  # id(base model) -> generation lock


def _gen_lock(model) -> threading.RLock:
    with _REGISTRY_LOCK:
        return _GEN_LOCKS.setdefault(id(model), threading.RLock())


def _to_dicts(messages) -> list[dict[str, str]]:
    """LangChain messages / dicts / a plain string -> ``[{"role", "content"}]``."""
    if isinstance(messages, str):
        return [{"role": "user", "content": messages}]
    out = []
    for m in messages:
        if isinstance(m, dict):
            out.append({"role": m["role"], "content": m["content"]})
        else:
            d = convert_to_openai_messages(m)
            c = d.get("content", "")
            if isinstance(c, list):  # content blocks -> text
                c = "".join(b.get("text", "") for b in c if isinstance(b, dict))
            out.append({"role": d["role"], "content": c})
    return out


def _cut_at(text: str, stops: Sequence[str] | None, keep: bool) -> str:
    if not stops:
        return text
    best = None
    for s in stops:
        i = text.find(s)
        if i >= 0 and (best is None or i < best[0]):
            best = (i, s)
    if best is None:
        return text
    i, s = best
    return text[: i + len(s)] if keep else text[:i]


class _Coalescer:
    """Gathers concurrent single requests into batched calls of ``fn(key, items)``.

    A daemon worker takes the oldest pending request, waits up to ``window_s`` for more
    with the same key (or until ``max_batch`` are pending), then runs them as one batch.
    Requests arriving while a batch runs are taken by the next one.
    """

    def __init__(self, fn, max_batch: int, window_s: float):
        self.fn, self.max_batch, self.window_s = fn, max(1, max_batch), max(0.0, window_s)
        self.cv = threading.Condition()
        self.pending: list[tuple[Any, Any, Future]] = []
        self.worker: threading.Thread | None = None
        self.calls = 0  # batched calls made (observability / tests)

    def submit(self, key, item) -> Future:
        return self.submit_many(key, [item])[0]

    def submit_many(self, key, items) -> list[Future]:
        futs: list[Future] = [Future() for _ in items]
        with self.cv:
            self.pending.extend((key, item, fut) for item, fut in zip(items, futs))
            if self.worker is None or not self.worker.is_alive():
                self.worker = threading.Thread(target=self._run, name="dara-coalescer", daemon=True)
                self.worker.start()
            self.cv.notify_all()
        return futs

    def _take(self):
        with self.cv:
            while not self.pending:
                if not self.cv.wait(timeout=30.0) and not self.pending:
                    return None  # idle: let the thread end; submit() restarts it
            key = self.pending[0][0]
            deadline = time.monotonic() + self.window_s
            while True:
                n = sum(1 for k, _, _ in self.pending if k == key)
                left = deadline - time.monotonic()
                if n >= self.max_batch or left <= 0:
                    break
                self.cv.wait(timeout=left)
            batch, rest = [], []
            for entry in self.pending:
                (batch if entry[0] == key and len(batch) < self.max_batch else rest).append(entry)
            self.pending = rest
            return key, batch

    def _run(self):
        while True:
            got = self._take()
            if got is None:
                with self.cv:
                    if not self.pending:
                        self.worker = None
                        return
                continue
            key, batch = got
            self.calls += 1
            try:
                results = self.fn(key, [item for _, item, _ in batch])
                for (_, _, fut), r in zip(batch, results):
                    fut.set_result(r)
            except BaseException as e:  # noqa: BLE001 - handed to every waiting caller
                for _, _, fut in batch:
                    if not fut.done():
                        fut.set_exception(e)


class LocalChatModel(BaseChatModel):
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
    coalesce_ms: float = Field(5.0, ge=0.0, description="How long the coalescer waits for more requests.")
    bf16: bool = Field(False, description="Generate under CPU bfloat16 autocast.")
    stop_at: list[str] = Field(default_factory=lambda: [ANSWER_STOP],
                               description="Stop strings kept at the end of the text.")

    _model: Any = PrivateAttr(None)
    _tok: Any = PrivateAttr(None)
    _names: dict[str, str] = PrivateAttr(default_factory=dict)
    _coalescer: _Coalescer | None = PrivateAttr(None)
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
    def _params(self, kw: dict) -> tuple:
        adapter = kw.get("adapter", self.adapter)
        if adapter is not None and adapter not in self._names:
            raise ValueError(f"adapter {adapter!r} is not loaded; loaded: {sorted(self._names)}")
        return (
            adapter,
            int(kw.get("max_new_tokens") or self.max_new_tokens),
            float(self.temperature if kw.get("temperature") is None else kw["temperature"]),
            float(self.top_p if kw.get("top_p") is None else kw["top_p"]),
            kw.get("seed", self.seed),
            kw.get("answer_format"),
        )

    def generate_texts(self, prompts: Sequence[Any], adapter: str | None = None,
                       max_new_tokens: int | None = None, temperature: float | None = None,
                       top_p: float | None = None, seed: int | None = None,
                       answer_format: tuple[int, bool] | None = None) -> list[str]:
        """Generate one completion per prompt (message list, dicts, or a string), batched.

        ``answer_format=(T, signed)`` constrains decoding to ``<answer>[...]</answer>``
        with exactly T numbers (``policies.constrained``); the model picks the digits.

        ``adapter=None`` uses the model's ``adapter`` field default only when called via
        LangChain; here ``None`` means the base model. Texts end at ``</answer>`` or EOS.
        """
        if adapter is not None and adapter not in self._names:
            raise ValueError(f"adapter {adapter!r} is not loaded; loaded: {sorted(self._names)}")
        key = (adapter, int(max_new_tokens or self.max_new_tokens),
               float(self.temperature if temperature is None else temperature),
               float(self.top_p if top_p is None else top_p), seed,
               None if answer_format is None else (int(answer_format[0]), bool(answer_format[1])))
        prompts = list(prompts)
        if not self.coalesce or not prompts:
            return self._generate_batch(key, prompts)
        # through the coalescer: concurrent callers (one per episode thread, e.g.
        # LLMPolicy.propose from many LangGraph threads) share batched generates
        return [f.result() for f in self._get_coalescer().submit_many(key, prompts)]

    def _generate_batch(self, key: tuple, prompts: list) -> list[str]:
        if not prompts:
            return []
        import torch

        adapter, max_new, temp, top_p, seed, answer_format = key
        tok = self._tok
        texts = [tok.apply_chat_template(_to_dicts(p), tokenize=False, add_generation_prompt=True)
                 for p in prompts]
        lengths = [len(tok(t, add_special_tokens=False)["input_ids"]) for t in texts]
        order = sorted(range(len(texts)), key=lambda i: lengths[i])  # less padding per chunk
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
            gen_kw.update(stop_strings=list(self.stop_at), tokenizer=tok)
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
            with ctx, amp, torch.inference_mode():
                if temp > 0 and seed is not None:
                    torch.manual_seed(int(seed))
                for s in range(0, len(order), self.batch_size):
                    idx = order[s: s + self.batch_size]
                    enc = tok([texts[i] for i in idx], return_tensors="pt", padding=True,
                              add_special_tokens=False)
                    kw_b = gen_kw
                    if answer_format is not None:
                        from transformers import LogitsProcessorList

                        from policies.constrained import AnswerFormatProcessor, answer_pattern

                        pat = answer_pattern(*answer_format)
                        proc = AnswerFormatProcessor(tok, [pat] * len(idx), enc["input_ids"].shape[1])
                        kw_b = {**gen_kw, "logits_processor": LogitsProcessorList([proc])}
                    gen = model.generate(**enc, **kw_b)
                    self._n_generate += 1
                    new = gen[:, enc["input_ids"].shape[1]:]
                    for j, i in enumerate(idx):
                        t = tok.decode(new[j], skip_special_tokens=True)
                        out[i] = _cut_at(t, self.stop_at, keep=True)
        return [o or "" for o in out]

    def _get_coalescer(self) -> _Coalescer:
        if self._coalescer is None:
            with _REGISTRY_LOCK:
                if self._coalescer is None:
                    self._coalescer = _Coalescer(self._generate_batch, self.batch_size,
                                                 self.coalesce_ms / 1000.0)
        return self._coalescer

    def _coalesced(self, key: tuple, messages) -> str:
        if not self.coalesce:
            return self._generate_batch(key, [messages])[0]
        return self._get_coalescer().submit(key, messages).result()

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> ChatResult:
        key = self._params(kwargs)
        text = _cut_at(self._coalesced(key, messages), stop, keep=False)
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content=text))])

    def batch(self, inputs: list, config=None, *, return_exceptions: bool = False, **kwargs: Any) -> list:
        """All inputs in one batched generate (per adapter): no thread pool."""
        if not inputs:
            return []
        stop = kwargs.pop("stop", None)
        key = self._params(kwargs)
        msgs = [self._convert_input(i).to_messages() for i in inputs]
        try:
            texts = self.generate_texts(msgs, *key)
        except Exception as e:
            if return_exceptions:
                return [e] * len(inputs)
            raise
        return [AIMessage(content=_cut_at(t, stop, keep=False)) for t in texts]

    @property
    def generate_calls(self) -> int:
        """``model.generate`` calls made by this chat model (tests, benchmarks)."""
        return self._n_generate

    @property
    def coalesced_calls(self) -> int:
        """Batched generate rounds run by the coalescer so far."""
        return 0 if self._coalescer is None else self._coalescer.calls


def make_chat_model(base: str = "embedded", adapters: dict[str, str] | None = None,
                    **kw: Any) -> LocalChatModel:
    """Backend factory used by :func:`policies.backends.make_chat_model`."""
    return LocalChatModel(base=str(base), adapters=dict(adapters or {}), **kw)
