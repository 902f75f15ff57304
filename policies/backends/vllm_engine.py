"""vLLM's OFFLINE engine (``vllm.LLM``) in a worker subprocess, one per settings per process.

Why a subprocess (:mod:`policies.backends.vllm_worker`):

- vLLM spawns its own engine-core and worker processes; started inside pytest or a
  LangGraph server they can hang or re-import ``__main__``. A fresh interpreter has
  nothing else in it, so callers need no ``if __name__ == "__main__"`` guard of their own.
- The worker runs in its own process group: :meth:`VLLMEngine.close` (also registered
  with ``atexit``) asks it to exit, then SIGTERMs and finally SIGKILLs the whole group, so
  no vLLM process outlives the caller. If the caller dies without closing, the worker
  sees EOF on its stdin and exits by itself.

One engine per (base model, adapters, engine settings) is started once per process and
shared (:func:`get_engine`), like the model cache of ``policies.models``.
"""

from __future__ import annotations

import atexit
import numbers
import os
import select
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

from langchain_core.messages import BaseMessage

from policies.backends.common import DEFAULT_STOP, log_tail, stop_process_group, to_message_dicts
from policies.backends.vllm_setup import (
    DEFAULT_ENGINE_KWARGS,
    DEFAULT_KV_CACHE_GIB,
    log_file,
    lora_rank_for,
    normalize_adapters,
    vllm_env,
    vllm_model_dir,
    whole_prefill_kwargs,
)
from policies.backends.vllm_worker import WORKER_MODULE, recv, send


class VLLMEngine:
    """A ``vllm.LLM`` living in a worker subprocess; thread-safe, one request at a time.

    ``adapters`` maps a name (``reasoner``, ``optimizer``, ...) to a PEFT LoRA dir; each
    gets a fixed ``LoRARequest(name, id, dir)``. :meth:`generate` also accepts an
    adapter *directory* not named at start-up (registered on first use).
    """

    def __init__(self, base: str | os.PathLike = "embedded",
                 adapters: Mapping[str, str | os.PathLike] | None = None, *,
                 kv_cache_gib: int = DEFAULT_KV_CACHE_GIB, startup_timeout: float = 600.0,
                 log_path: str | os.PathLike | None = None, env: Mapping[str, str] | None = None,
                 **engine_kwargs: Any) -> None:
        self.base = str(base)
        self.model_dir = str(vllm_model_dir(base))
        self.adapters = normalize_adapters(adapters)
        kw = {**DEFAULT_ENGINE_KWARGS, **engine_kwargs}
        kw = {**whole_prefill_kwargs(kw["max_model_len"]), **kw}
        kw.setdefault("max_lora_rank", lora_rank_for(list(self.adapters.values())))
        kw["enable_lora"] = True
        self.engine_kwargs = kw
        self.kv_cache_gib = int(kv_cache_gib)
        self.startup_timeout = float(startup_timeout)
        self.env = dict(env or {})
        self.log_path = log_file(log_path, "dara-vllm-")
        self.info: dict[str, Any] = {}
        self._proc: subprocess.Popen | None = None
        self._lock = threading.Lock()

    # -- lifecycle ------------------------------------------------------------------
    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def _failure(self, what: str) -> str:
        return f"{what}; log {self.log_path}:\n{log_tail(self.log_path)}"

    def start(self) -> "VLLMEngine":
        with self._lock:
            if self.alive:
                return self
            env = vllm_env(self.kv_cache_gib, self.env)
            root = str(Path(__file__).resolve().parents[2])
            env["PYTHONPATH"] = os.pathsep.join([root] + [p for p in [env.get("PYTHONPATH")] if p])
            with open(self.log_path, "ab") as log:
                self._proc = subprocess.Popen(
                    [sys.executable, "-m", WORKER_MODULE, "--worker"],
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, env=env,
                    start_new_session=True, cwd=root,
                )
            _ENGINES_ALIVE.add(self)
            send(self._proc.stdin, {"model": self.model_dir, "adapters": self.adapters,
                                    "engine_kwargs": self.engine_kwargs})
            self._await_ready()
            return self

    def _await_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        fd = self._proc.stdout.fileno()
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                self._kill()
                raise TimeoutError(self._failure(f"vLLM worker did not start within {self.startup_timeout:.0f} s"))
            r, _, _ = select.select([fd], [], [], min(left, 1.0))
            if r or self._proc.poll() is not None:
                break
        try:
            msg = recv(self._proc.stdout)
        except EOFError:
            rc = self._proc.returncode
            self._kill()
            raise RuntimeError(self._failure(f"vLLM worker exited during start-up (rc={rc})")) from None
        if msg.get("status") != "ready":
            self._kill()
            raise RuntimeError(self._failure(f"vLLM worker failed to start: {msg.get('error')}"))
        self.info = msg

    def close(self, timeout: float = 30.0) -> None:
        """Ask the worker to shut vLLM down; SIGTERM then SIGKILL its process group."""
        with self._lock:
            proc = self._proc
            if proc is None:
                return
            if proc.poll() is None:
                try:
                    send(proc.stdin, {"op": "close"})
                    proc.stdin.close()
                except (OSError, ValueError):
                    pass
                try:
                    proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    pass
            self._kill()
            _ENGINES_ALIVE.discard(self)

    def _kill(self) -> None:
        proc = self._proc
        if proc is None:
            return
        stop_process_group(proc, term_timeout=10.0, kill_timeout=10.0)
        for f in (proc.stdin, proc.stdout):
            try:
                if f:
                    f.close()
            except OSError:
                pass
        self._proc = None

    def __enter__(self) -> "VLLMEngine":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    # -- generation -----------------------------------------------------------------
    def _call(self, req: dict) -> dict:
        with self._lock:
            if not self.alive:
                raise RuntimeError(self._failure("vLLM worker is not running"))
            try:
                send(self._proc.stdin, req)
                msg = recv(self._proc.stdout)
            except (EOFError, BrokenPipeError) as e:
                raise RuntimeError(self._failure(f"vLLM worker died ({e})")) from None
        if msg.get("status") != "ok":
            raise RuntimeError(f"vLLM worker error: {msg.get('error')}")
        return msg

    def _adapter_ref(self, adapter: str | os.PathLike | None) -> str | None:
        if adapter is None or str(adapter) in self.adapters:
            return None if adapter is None else str(adapter)
        p = Path(adapter).expanduser()
        if not (p / "adapter_config.json").is_file():
            raise ValueError(f"adapter={str(adapter)!r}: not one of {sorted(self.adapters)} and not a PEFT adapter dir")
        return str(p.resolve())

    def generate(self, messages_batch: Sequence[Sequence[BaseMessage | Mapping[str, str]]],
                 adapter: str | os.PathLike | None = None, max_new_tokens: int = 64,
                 temperature: float = 0.0, seed: int | Sequence[int | None] | None = 0,
                 stop: Sequence[str] | None = DEFAULT_STOP, top_p: float = 1.0,
                 answer_format: tuple[int, bool] | None = None) -> list[dict]:
        """``[{"text", "n_tokens", "finish_reason"}]`` per conversation, in order.

        ``answer_format=(T, signed)`` constrains every answer to the format
        (:func:`policies.constrained.answer_pattern` as a structured-outputs regex).

        ``seed`` seeds request ``i`` with ``seed + i`` (distinct samples for repeated
        prompts, reproducible runs), or is one seed per request; ignored when
        ``temperature == 0`` (greedy).
        """
        if not messages_batch:
            return []
        n = len(messages_batch)
        if seed is None or isinstance(seed, numbers.Integral):
            seeds = [None if seed is None else int(seed) + i for i in range(n)]
        else:
            seeds = [None if s is None else int(s) for s in seed]
            if len(seeds) != n:
                raise ValueError(f"seed: {len(seeds)} seeds for {n} conversations")
        if not self.alive:
            self.start()
        req = {
            "op": "generate",
            "messages": [to_message_dicts(m) for m in messages_batch],
            "adapter": self._adapter_ref(adapter),
            "max_new_tokens": int(max_new_tokens), "temperature": float(temperature),
            "top_p": float(top_p), "seeds": seeds, "stop": list(stop or []),
            "answer_format": None if answer_format is None else [int(answer_format[0]), bool(answer_format[1])],
        }
        return self._call(req)["outputs"]

    def generate_ids(self, prompt_ids: Sequence[Sequence[int]], lora: Mapping[str, Any] | None,
                     max_new_tokens: int, temperature: float, top_p: float, seeds: Sequence[int | None],
                     stop: Sequence[str] | None = DEFAULT_STOP,
                     answer_formats: Sequence[tuple[int, bool] | None] | None = None,
                     drop_lora_ids: Sequence[int] = ()) -> list[dict]:
        """``[{"token_ids", "logprobs", "text", "finish_reason"}]`` per token-id prompt.

        For callers that tokenise themselves and need the sampled ids (a trainer): the
        prompts go in as ids (no chat template here), ``lora`` is ``{"name", "id",
        "path"}`` used as given (a new ``id`` makes vLLM load the directory afresh), and
        each token comes with vLLM's log-prob of it at temperature 1, unconstrained.
        ``answer_formats`` (``(T, signed)`` or ``None`` per prompt) constrain sampling
        to the answer format; the engine must have been started with
        ``logits_processors=[policies.backends.vllm_answer_format.ANSWER_FORMAT_PROCESSOR]``.
        ``drop_lora_ids`` are unloaded first.
        """
        n = len(prompt_ids)
        formats = list(answer_formats) if answer_formats is not None else [None] * n
        if len(seeds) != n or len(formats) != n:
            raise ValueError(f"generate_ids: {n} prompts but {len(seeds)} seeds and {len(formats)} answer formats")
        if not n:
            return []
        if lora is not None:
            self._adapter_ref(lora["path"])  # validates the directory
        if not self.alive:
            self.start()
        req = {
            "op": "generate_ids", "prompt_ids": [list(map(int, p)) for p in prompt_ids],
            "lora": None if lora is None else {"name": str(lora["name"]), "id": int(lora["id"]),
                                               "path": str(Path(lora["path"]).resolve())},
            "drop_lora_ids": [int(i) for i in drop_lora_ids],
            "max_new_tokens": int(max_new_tokens), "temperature": float(temperature), "top_p": float(top_p),
            "seeds": [None if s is None else int(s) for s in seeds], "stop": list(stop or []),
            "answer_formats": [None if f is None else [int(f[0]), bool(f[1])] for f in formats],
        }
        return self._call(req)["outputs"]

    def generate_texts(self, messages_batch, adapter=None, max_new_tokens: int = 64,
                       temperature: float = 0.0, seed: int | None = 0,
                       stop: Sequence[str] | None = DEFAULT_STOP, **kw) -> list[str]:
        return [o["text"] for o in self.generate(messages_batch, adapter, max_new_tokens,
                                                 temperature, seed, stop, **kw)]


# ---------------------------------------------------------------------------------------
# one engine per settings per process
# ---------------------------------------------------------------------------------------
_ENGINES: dict[tuple, VLLMEngine] = {}
_ENGINES_ALIVE: set[VLLMEngine] = set()
_ENGINES_LOCK = threading.Lock()


def get_engine(base: str | os.PathLike = "embedded",
               adapters: Mapping[str, str | os.PathLike] | None = None, **kw: Any) -> VLLMEngine:
    """The process-wide engine for these settings, started on first use."""
    key = (str(vllm_model_dir(base)), tuple(sorted(normalize_adapters(adapters).items())),
           tuple(sorted((k, repr(v)) for k, v in kw.items())))
    with _ENGINES_LOCK:
        eng = _ENGINES.get(key)
        if eng is None or not eng.alive:
            eng = VLLMEngine(base, adapters, **kw)
            _ENGINES[key] = eng
    return eng.start()


def close_all() -> None:
    """Shut down every engine this process started (registered with ``atexit``)."""
    for eng in list(_ENGINES_ALIVE):
        try:
            eng.close()
        except Exception:  # pragma: no cover - best effort at exit
            pass
    _ENGINES.clear()


atexit.register(close_all)
