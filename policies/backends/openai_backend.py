"""``openai`` backend: any OpenAI-compatible server through ``langchain-openai``.

The intended server is ``vllm serve BASE --enable-lora --lora-modules reasoner=DIR
optimizer=DIR``: each LoRA adapter is served as its own *model name*, so the adapter is
chosen by the ``model`` field of the request (``reasoner`` / ``optimizer``; no adapter =
the base model's served name). :func:`policies.backends.vllm_server.serve_vllm` starts
exactly that server on 127.0.0.1 (tests, benchmarks, a laptop demo)::

    with serve_vllm("embedded", {"reasoner": r_dir, "optimizer": o_dir}) as srv:
        chat = make_chat_model(base_url=srv.base_url, adapters=srv.adapters)
        chat.with_adapter("optimizer").invoke(messages)
        chat.invoke(messages, adapter="reasoner", max_new_tokens=20)  # per-call settings
        chat.generate_texts([msgs1, msgs2], adapter="reasoner")     # .batch(), concurrent

**A fleet of servers.** ``base_url`` may name several servers, comma-separated
(``http://gpu1:8000/v1,http://gpu2:8000/v1``, e.g. from ``context.base_url`` or
``$DARA_OPENAI_BASE_URL``): one chat model spreads its requests over them round-robin
(:class:`SpreadTransport`), so the concurrent episodes of a batch share the fleet. Every
server must serve the same model and adapter names (discovery asks the first).

Defaults follow the other backends: greedy (``temperature=0``), ``max_tokens=64``, stop
at ``</answer>``; against vLLM (``vllm_extras=True``, the default) the request also asks
for ``include_stop_str_in_output`` so the text keeps ``</answer>`` like the ``local`` and
``vllm`` backends, and, when the caller gives the answer's length
(``generate_texts(answer_format=(T, signed))``, as :class:`policies.llm.LLMPolicy`
does), for vLLM's structured outputs with the answer-format regex, so the server decodes
exactly what the ``local`` and ``vllm`` backends force. Set ``vllm_extras=False`` for
servers that reject vLLM's extra fields; the stop string is then dropped by the server
(the decoder accepts that) and the model writes the format unaided.

The chat model is a :class:`DaraChatOpenAI`, a ``langchain_openai.ChatOpenAI`` subclass
that only adds adapter bookkeeping, :meth:`~DaraChatOpenAI.generate_texts`, and the call
keywords the other backends take (``adapter=``, ``max_new_tokens=``), translated into
the request's ``model`` and token cap. No request coalescing here: the server batches
concurrent requests itself.
"""

from __future__ import annotations

import itertools
import json
import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Mapping, Sequence

import httpx
from langchain_core.language_models import LanguageModelInput
from langchain_openai import ChatOpenAI
from pydantic import Field

from policies.backends.common import DEFAULT_STOP, to_message_dicts, token_cap

DEFAULT_BASE_URL = "http://127.0.0.1:8000/v1"


# ---------------------------------------------------------------------------------------
# which servers
# ---------------------------------------------------------------------------------------
def openai_base_urls(base_url: str | None = None) -> list[str]:
    """The servers of the ``openai`` backend: ``base_url`` (one URL or a comma-separated
    list), else ``$DARA_OPENAI_BASE_URL``, then ``$OPENAI_BASE_URL``, then
    ``http://127.0.0.1:8000/v1``; trailing slashes dropped."""
    given = (base_url or os.environ.get("DARA_OPENAI_BASE_URL") or os.environ.get("OPENAI_BASE_URL")
             or DEFAULT_BASE_URL)
    urls = [u.strip().rstrip("/") for u in given.split(",") if u.strip()]
    if not urls:
        raise ValueError(f"base_url = {given!r}: expected one or more comma-separated http(s):// URLs")
    return urls


class _Spread:
    """Round-robin URL rebasing shared by the sync and async transports."""

    def __init__(self, base_urls: Sequence[str]):
        if not base_urls:
            raise ValueError("SpreadTransport needs at least one base URL")
        self.bases = [httpx.URL(u.rstrip("/")) for u in base_urls]
        self._turn = itertools.count()  # next() is atomic under the GIL: thread-safe enough

    def rebase(self, request: httpx.Request) -> None:
        """Point ``request`` (built for the first server) at the next server in turn."""
        first = self.bases[0]
        target = self.bases[next(self._turn) % len(self.bases)]
        path = request.url.raw_path
        if target == first or (request.url.host, request.url.port) != (first.host, first.port) \
                or not path.startswith(first.raw_path):
            return
        request.url = target.copy_with(raw_path=target.raw_path + path[len(first.raw_path):])
        request.headers["Host"] = request.url.netloc.decode("ascii")


class SpreadTransport(_Spread, httpx.BaseTransport):
    """An httpx transport that sends request ``i`` to server ``i mod n``.

    The OpenAI client is built for the first URL; each request's URL is rebased onto the
    next server's, so every call of the chat model (``invoke``, ``batch``, retries)
    spreads over the fleet without a second client per server."""

    def __init__(self, base_urls: Sequence[str], transport: httpx.BaseTransport | None = None):
        super().__init__(base_urls)
        self.inner = transport or httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.rebase(request)
        return self.inner.handle_request(request)

    def close(self) -> None:
        self.inner.close()


class AsyncSpreadTransport(_Spread, httpx.AsyncBaseTransport):
    """:class:`SpreadTransport` for the async client (``ainvoke``, ``abatch``)."""

    def __init__(self, base_urls: Sequence[str], transport: httpx.AsyncBaseTransport | None = None):
        super().__init__(base_urls)
        self.inner = transport or httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.rebase(request)
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


# ---------------------------------------------------------------------------------------
# discovery
# ---------------------------------------------------------------------------------------
def _get_json(url: str, timeout: float = 5.0, api_key: str | None = None) -> Any:
    req = urllib.request.Request(url)
    if api_key:
        req.add_header("Authorization", f"Bearer {api_key}")
    with urllib.request.urlopen(req, timeout=timeout) as r:  # noqa: S310 - loopback/user URL
        return json.loads(r.read().decode())


def list_models(base_url: str, api_key: str | None = "EMPTY", timeout: float = 5.0) -> list[dict]:
    """``GET {base_url}/models`` -> the ``data`` list (vLLM adds ``root`` / ``parent``)."""
    return list(_get_json(base_url.rstrip("/") + "/models", timeout, api_key).get("data", []))


def base_model_name(base_url: str, api_key: str | None = "EMPTY", timeout: float = 5.0) -> str:
    """The served name of the base model: the entry without a ``parent`` (vLLM), else the first."""
    models = list_models(base_url, api_key, timeout)
    if not models:
        raise RuntimeError(f"{base_url}/models lists no model")
    for m in models:
        if m.get("parent") is None:
            return str(m["id"])
    return str(models[0]["id"])


# ---------------------------------------------------------------------------------------
# the chat model
# ---------------------------------------------------------------------------------------
class DaraChatOpenAI(ChatOpenAI):
    """``ChatOpenAI`` whose ``model`` is a served adapter name (or the base model).

    ``base_model`` is the base model's served name; ``adapters`` the adapter names the
    server knows (a dict's values are ignored: the server loaded the directories).
    """

    base_model: str = Field(description="Served name of the base model (used when no adapter is chosen).")
    adapter_names: list[str] = Field(default_factory=list, description="Served adapter names (roles).")
    max_concurrency: int = Field(default=8, ge=1, description="Concurrent requests in generate_texts/batch.")
    format_constraint: bool = Field(default=True, description=(
        "Ask the server to enforce the answer format (vLLM's structured outputs, a regex) when "
        "generate_texts gets answer_format; off for servers that reject vLLM's extra fields."))

    def model_for(self, adapter: str | None) -> str:
        """The request ``model`` for ``adapter`` (``None`` = the base model)."""
        if adapter is None:
            return self.base_model
        if self.adapter_names and adapter not in self.adapter_names and adapter != self.base_model:
            raise ValueError(f"adapter {adapter!r} is not served; served adapters: {self.adapter_names}")
        return adapter

    def with_adapter(self, adapter: str | None) -> "DaraChatOpenAI":
        """A copy whose requests go to ``adapter`` (shares the HTTP clients)."""
        return self.model_copy(update={"model_name": self.model_for(adapter)})

    def _get_request_payload(self, input_: LanguageModelInput, *, stop: list[str] | None = None,
                             **kwargs: Any) -> dict:
        """The request body, with the backends' call keywords translated:
        ``adapter`` -> ``model``, ``max_new_tokens`` -> the token cap."""
        if "adapter" in kwargs:
            kwargs["model"] = self.model_for(kwargs.pop("adapter"))
        cap = kwargs.pop("max_new_tokens", None)
        if cap is not None:
            kwargs["max_tokens"] = token_cap(cap)
        return super()._get_request_payload(input_, stop=stop, **kwargs)

    def generate_texts(self, messages_batch: Sequence[Any], adapter: str | None = None,
                       max_new_tokens: int | None = None, temperature: float | None = None,
                       top_p: float | None = None, seed: int | None = None,
                       max_concurrency: int | None = None,
                       answer_format: tuple[int, bool] | None = None) -> list[str]:
        """One completion per conversation via ``.batch()`` (``max_concurrency`` requests in flight).

        Same contract as the ``local`` / ``vllm`` backends: ``adapter=None`` = base model;
        ``None`` sampling arguments take the model's fields; request ``i`` is seeded with
        ``seed + i`` when sampling. ``answer_format=(T, signed)`` asks the server for an
        answer of exactly T numbers (:func:`policies.constrained.answer_pattern` as vLLM's
        ``structured_outputs`` regex), as the other backends decode; with
        ``format_constraint`` off the model writes freely.
        """
        if not messages_batch:
            return []
        chat = self.with_adapter(adapter)
        kw = {k: v for k, v in (("max_new_tokens", max_new_tokens), ("temperature", temperature),
                                 ("top_p", top_p)) if v is not None}
        if answer_format is not None and self.format_constraint:
            from policies.constrained import answer_pattern

            kw["extra_body"] = {**(chat.extra_body or {}),
                                "structured_outputs": {"regex": answer_pattern(*answer_format)}}
        inputs = [to_message_dicts(m) for m in messages_batch]
        cfg = {"max_concurrency": int(max_concurrency or self.max_concurrency)}
        sampled = kw.get("temperature", chat.temperature or 0) > 0
        if seed is None or not sampled:
            outs = chat.batch(inputs, config=cfg, **kw)
        else:  # per-request seeds: distinct samples for repeated prompts, reproducible runs
            from langchain_core.runnables import RunnableLambda

            pairs = list(enumerate(inputs))
            outs = RunnableLambda(lambda p: chat.invoke(p[1], seed=int(seed) + p[0], **kw)).batch(pairs, config=cfg)
        return [o.text for o in outs]


def make_chat_model(base: str | None = None, adapters: Mapping[str, Any] | Sequence[str] | None = None, *,
                    base_url: str | None = None, api_key: str | None = None,
                    adapter: str | None = None, model: str | None = None,
                    max_new_tokens: int = 64, temperature: float = 0.0, top_p: float | None = None,
                    seed: int | None = None, stop: Sequence[str] | None = DEFAULT_STOP,
                    vllm_extras: bool = True, max_concurrency: int = 8, timeout: float = 120.0,
                    max_retries: int = 2, **kw: Any) -> DaraChatOpenAI:
    """A :class:`DaraChatOpenAI` against ``base_url`` (default ``$DARA_OPENAI_BASE_URL``,
    then ``$OPENAI_BASE_URL``, then ``http://127.0.0.1:8000/v1``); several
    comma-separated URLs spread the requests round-robin (:class:`SpreadTransport`).

    - ``adapters``: the adapter names the server serves (a role -> dir dict is accepted;
      only the names are used).
    - ``model``: the base model's served name; default: discovered from ``/v1/models``
      (the entry without a parent). ``base`` is accepted for the common factory
      signature: used as the served name unless it is ``embedded``/a local path.
    - ``adapter``: the adapter used by ``invoke``; ``None`` = base model.
    - ``api_key``: default ``$OPENAI_API_KEY`` or ``"EMPTY"`` (vLLM without ``--api-key``).
    """
    urls = openai_base_urls(base_url)
    base_url = urls[0]
    if len(urls) > 1:
        kw.setdefault("http_client", httpx.Client(transport=SpreadTransport(urls)))
        kw.setdefault("http_async_client", httpx.AsyncClient(transport=AsyncSpreadTransport(urls)))
    api_key = api_key or os.environ.get("OPENAI_API_KEY") or "EMPTY"
    if model is None and base and base != "embedded" and not Path(base).expanduser().exists():
        model = base
    if model is None:
        try:
            model = base_model_name(base_url, api_key)
        except (urllib.error.URLError, OSError, ValueError) as e:
            raise ConnectionError(f"base_url={base_url!r}: cannot list models ({e}); "
                                  "is the server running? pass model= to skip discovery") from None
    names = list(adapters) if adapters is not None else []
    extra_body = dict(kw.pop("extra_body", None) or {})
    if vllm_extras:
        extra_body.setdefault("include_stop_str_in_output", True)
    chat = DaraChatOpenAI(
        model=model, base_model=model, adapter_names=[str(n) for n in names],
        base_url=base_url, api_key=api_key, temperature=temperature, max_tokens=max_new_tokens,
        top_p=top_p, seed=seed, stop=list(stop) if stop else None, extra_body=extra_body or None,
        max_concurrency=max_concurrency, format_constraint=vllm_extras, timeout=timeout,
        max_retries=max_retries, **kw,
    )
    return chat.with_adapter(adapter) if adapter is not None else chat
