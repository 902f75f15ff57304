"""Helpers every chat-model backend shares: messages, stop strings, per-call settings,
the one-call ``batch`` of the batching backends, and stopping a subprocess together with
everything it started.

Keeping them here means the ``local``, ``vllm`` and ``openai`` backends read the same
messages, stop at the same string and take the same per-call keywords
(``.invoke(messages, adapter=..., max_new_tokens=...)``, ``.batch(...)``, ``.bind(...)``).
"""

from __future__ import annotations

import numbers
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any, Mapping, NamedTuple, Sequence

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, convert_to_openai_messages
from langchain_core.outputs import ChatGeneration, ChatResult

ANSWER_STOP = "</answer>"
DEFAULT_STOP: tuple[str, ...] = (ANSWER_STOP,)


# ---------------------------------------------------------------------------------------
# messages and stop strings
# ---------------------------------------------------------------------------------------
def to_message_dicts(messages: Any) -> list[dict[str, str]]:
    """A conversation as ``[{"role", "content"}]``.

    Accepts a plain string (one user message), a single message, or a sequence of
    LangChain messages / ``{"role", "content"}`` dicts; content blocks become text.
    """
    if isinstance(messages, (str, BaseMessage, Mapping)):
        messages = [messages]
    return [{"role": d["role"], "content": d.get("content") or ""}
            for d in convert_to_openai_messages(list(messages), text_format="string")]


def cut_at(text: str, stops: Sequence[str] | None, keep: bool = False) -> str:
    """``text`` up to the first of ``stops``: the stop string kept (``keep``) or cut off.

    ``keep=False`` is LangChain's ``stop=`` meaning; ``keep=True`` is how the backends
    end an answer at ``</answer>`` and keep the tag.
    """
    found = [(i, s) for i, s in ((text.find(s), s) for s in stops or ()) if i >= 0]
    if not found:
        return text
    i, s = min(found)
    return text[: i + len(s)] if keep else text[:i]


# ---------------------------------------------------------------------------------------
# per-call generation settings
# ---------------------------------------------------------------------------------------
class CallParams(NamedTuple):
    """The settings of one generation call (also the coalescers' grouping key)."""

    adapter: str | None
    max_new_tokens: int
    temperature: float
    top_p: float
    seed: int | None


def stop_criteria(tokenizer, stop_strings: Sequence[str]):
    """A ``StoppingCriteriaList`` ending generation at any of ``stop_strings``, built once
    per tokenizer and stop strings.

    ``generate(stop_strings=...)`` builds a ``StopStringCriteria`` on every call, and
    transformers' own cache of its vocabulary tables never hits for a fast tokenizer (the
    cache key is ``get_vocab()``'s order, which the Rust tokenizer varies from call to
    call), so every call re-embedded the 49k-token vocabulary: 0.4-0.6 s per batched
    generate on a 2-core CPU. The criterion itself is stateless across calls.
    """
    from transformers import StoppingCriteriaList
    from transformers.generation.stopping_criteria import StopStringCriteria

    key = tuple(stop_strings)
    cache = getattr(tokenizer, "_dara_stop_criteria", None)
    if cache is None:
        cache = {}
        try:
            tokenizer._dara_stop_criteria = cache
        except Exception:  # pragma: no cover - exotic tokenizer objects
            pass
    if key not in cache:
        cache[key] = StopStringCriteria(tokenizer, list(key))
    return StoppingCriteriaList([cache[key]])


def token_cap(value: Any) -> int:
    """``value`` as an answer-token cap (``max_new_tokens``); ``ValueError`` unless an integer >= 1."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"max_new_tokens must be an integer >= 1, got {value!r}")
    return int(value)


def call_params(model: Any, kwargs: Mapping[str, Any]) -> CallParams:
    """Per-call settings: LangChain call keywords over the chat model's fields.

    ``adapter`` (``None`` = the base model; absent = the model's ``adapter`` field),
    ``max_new_tokens`` (alias ``max_tokens``), ``temperature``, ``top_p``, ``seed``.
    A keyword given as ``None`` takes the field's value. Bad values raise ``ValueError``
    naming the keyword.
    """
    def pick(*names: str) -> Any:
        for n in names:
            if kwargs.get(n) is not None:
                return kwargs[n]
        return getattr(model, names[0])

    cap = token_cap(pick("max_new_tokens", "max_tokens"))
    temperature, top_p = pick("temperature"), pick("top_p")
    if isinstance(temperature, bool) or not isinstance(temperature, numbers.Real) or not temperature >= 0:
        raise ValueError(f"temperature must be a number >= 0, got {temperature!r}")
    if isinstance(top_p, bool) or not isinstance(top_p, numbers.Real) or not 0 < top_p <= 1:
        raise ValueError(f"top_p must be a number in (0, 1], got {top_p!r}")
    seed = pick("seed")
    return CallParams(kwargs["adapter"] if "adapter" in kwargs else model.adapter,
                      cap, float(temperature), float(top_p), None if seed is None else int(seed))


def explicit_kwargs(adapter: str | None, **settings: Any) -> dict[str, Any]:
    """``generate_texts`` arguments as call keywords: ``adapter`` always (``None`` = base
    model), the other settings only when given."""
    return {"adapter": adapter, **{k: v for k, v in settings.items() if v is not None}}


# ---------------------------------------------------------------------------------------
# process groups (vLLM engine workers and ``vllm serve``)
# ---------------------------------------------------------------------------------------
def group_alive(pgid: int) -> bool:
    """True while a live (non-zombie) process is in process group ``pgid``."""
    proc = Path("/proc")
    if proc.is_dir():
        for d in proc.iterdir():
            if not d.name.isdigit():
                continue
            try:
                stat = (d / "stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rindex(")") + 2:].split()  # state ppid pgrp ...
            if len(fields) > 2 and int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
                return True
        return False
    try:  # pragma: no cover - non-Linux
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stop_process_group(proc: subprocess.Popen, term_timeout: float = 30.0, kill_timeout: float = 10.0) -> None:
    """Stop ``proc`` (started with ``start_new_session=True``) and its whole process group.

    SIGTERM to the group, wait up to ``term_timeout`` for every member to exit, then
    SIGKILL and wait up to ``kill_timeout``. The leader is reaped.
    """
    for sig, timeout in ((signal.SIGTERM, term_timeout), (signal.SIGKILL, kill_timeout)):
        if proc.poll() is not None and not group_alive(proc.pid):
            break
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
        except PermissionError:  # pragma: no cover
            proc.send_signal(sig)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None and not group_alive(proc.pid):
                break
            time.sleep(0.2)
    try:
        proc.wait(1.0)
    except subprocess.TimeoutExpired:  # pragma: no cover
        pass


def log_tail(path: str | os.PathLike, n: int = 40) -> str:
    """The last ``n`` lines of a subprocess log (for start-up and crash errors)."""
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "(no log)"


# ---------------------------------------------------------------------------------------
# the LangChain surface shared by the batching backends (local, vllm)
# ---------------------------------------------------------------------------------------
class BatchedChatModel(BaseChatModel):
    """A chat model whose single calls and ``batch`` go through one batched path.

    Subclasses implement :meth:`_complete` (conversations + call keywords -> one
    ``AIMessage`` each). ``batch`` sends all inputs in ONE call instead of
    ``BaseChatModel.batch``'s thread pool (callbacks are not run per input). LangChain
    ``stop=`` strings cut the text before them.
    """

    def _complete(self, conversations: list[list[BaseMessage]], kwargs: dict[str, Any]) -> list[AIMessage]:
        raise NotImplementedError

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> ChatResult:
        msg = _cut_message(self._complete([messages], kwargs)[0], stop)
        return ChatResult(generations=[ChatGeneration(message=msg)])

    def batch(self, inputs: list, config=None, *, return_exceptions: bool = False, **kwargs: Any) -> list:
        if not inputs:
            return []
        stop = kwargs.pop("stop", None)
        conversations = [self._convert_input(x).to_messages() for x in inputs]
        try:
            messages = self._complete(conversations, kwargs)
        except Exception as e:
            if return_exceptions:
                return [e] * len(inputs)
            raise
        return [_cut_message(m, stop) for m in messages]


def _cut_message(msg: AIMessage, stop: Sequence[str] | None) -> AIMessage:
    return msg.model_copy(update={"content": cut_at(msg.content, stop)}) if stop else msg
