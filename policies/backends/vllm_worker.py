"""The vLLM worker subprocess and the pipe protocol it speaks with its parent.

:class:`policies.backends.vllm_engine.VLLMEngine` starts
``python -m policies.backends.vllm_worker --worker`` and talks to it over the worker's
stdin/stdout: each message is an 8-byte big-endian length followed by a pickle. vLLM's
own logging goes to stderr (the engine's log file).

Messages: the parent sends ``{"model", "adapters", "engine_kwargs"}`` first and gets
``{"status": "ready", ...}`` (or ``"error"``); then ``{"op": "generate", "messages",
"adapter", "max_new_tokens", "temperature", "top_p", "seeds", "stop"}`` gets
``{"status": "ok", "outputs": [{"text", "n_tokens", "finish_reason"}]}``; ``{"op":
"generate_ids", "prompt_ids", "lora", "drop_lora_ids", "max_new_tokens", "temperature",
"top_p", "seeds", "stop", "answer_formats"}`` (token-id prompts, an explicit
``LoRARequest``, an optional answer format per prompt) gets ``{"status": "ok",
"outputs": [{"token_ids", "logprobs", "text", "finish_reason"}]}``; ``{"op": "close"}``
or EOF on stdin ends the worker. So does the parent's death, even mid-generation: a
watchdog thread sees the parent pid change and kills the worker's own process group (the
worker leads its session, so vLLM's engine-core processes go with it) instead of leaving
an orphan holding the CPU.

A fresh interpreter started with ``-m`` has a guarded ``__main__`` and nothing else in
it, so vLLM's own engine-core processes start cleanly whoever the caller is.
"""

from __future__ import annotations

import os
import pickle
import signal
import struct
import sys
import threading
import time
import traceback
from typing import Any

WORKER_MODULE = "policies.backends.vllm_worker"


# ---------------------------------------------------------------------------------------
# pipe protocol: 8-byte big-endian length + pickle
# ---------------------------------------------------------------------------------------
def send(f, obj) -> None:
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


def recv(f):
    (n,) = struct.unpack("!Q", _read_exact(f, 8))
    return pickle.loads(_read_exact(f, n))


# ---------------------------------------------------------------------------------------
# the worker (child side)
# ---------------------------------------------------------------------------------------
def _generate(llm, loras: dict[str, Any], req: dict) -> list[dict]:  # pragma: no cover - subprocess
    from vllm import SamplingParams
    from vllm.lora.request import LoRARequest

    a = req.get("adapter")
    lr = None
    if a is not None:
        if a not in loras:
            loras[a] = LoRARequest(a, len(loras) + 1, a)  # the dir is a unique name
        lr = loras[a]
    structured = None
    if req.get("answer_format"):
        from vllm.sampling_params import StructuredOutputsParams

        from policies.constrained import answer_pattern

        structured = StructuredOutputsParams(regex=answer_pattern(*req["answer_format"]))
    sps = [SamplingParams(
        temperature=req["temperature"], top_p=req["top_p"], max_tokens=req["max_new_tokens"],
        seed=None if (seed is None or req["temperature"] == 0) else int(seed),
        stop=req["stop"] or None, include_stop_str_in_output=True, structured_outputs=structured,
    ) for seed in req["seeds"]]
    outs = llm.chat(req["messages"], sps, lora_request=lr, use_tqdm=False)
    return [{"text": o.outputs[0].text, "n_tokens": len(o.outputs[0].token_ids),
             "finish_reason": o.outputs[0].finish_reason} for o in outs]


def _generate_ids(llm, req: dict) -> list[dict]:  # pragma: no cover - subprocess
    """Sample from token-id prompts with the caller's own ``LoRARequest`` (a new id per
    adapter version, so vLLM never serves a cached older one) and return the sampled
    token ids with their log-probs before temperature, top-p and the answer-format
    constraint (:mod:`policies.backends.vllm_answer_format`, applied after vLLM takes
    them)."""
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt
    from vllm.lora.request import LoRARequest

    from policies.backends.vllm_answer_format import ANSWER_FORMAT_ARG

    for lora_id in req.get("drop_lora_ids") or []:
        llm.llm_engine.remove_lora(int(lora_id))
    lora = req.get("lora")
    lr = LoRARequest(lora["name"], int(lora["id"]), lora["path"]) if lora else None
    sps = [SamplingParams(
        temperature=req["temperature"], top_p=req["top_p"], max_tokens=req["max_new_tokens"],
        seed=None if seed is None else int(seed), stop=req["stop"] or None,
        include_stop_str_in_output=True, logprobs=0,
        extra_args=None if fmt is None else {ANSWER_FORMAT_ARG: list(fmt)},
    ) for seed, fmt in zip(req["seeds"], req["answer_formats"])]
    prompts = [TokensPrompt(prompt_token_ids=[int(t) for t in p]) for p in req["prompt_ids"]]
    outs = llm.generate(prompts, sps, lora_request=lr, use_tqdm=False)
    res = []
    for o in outs:
        c = o.outputs[0]
        ids = [int(t) for t in c.token_ids]
        lps = [float(d[t].logprob) for t, d in zip(ids, c.logprobs)]
        res.append({"token_ids": ids, "logprobs": lps, "text": c.text, "finish_reason": c.finish_reason})
    return res


OPS = {"generate": lambda llm, loras, req: _generate(llm, loras, req),
       "generate_ids": lambda llm, loras, req: _generate_ids(llm, req)}


def watch_parent(parent: int, every_s: float = 2.0, on_orphan=None) -> threading.Thread:
    """A daemon thread that calls ``on_orphan`` (default: kill this process group) once
    ``os.getppid()`` is no longer ``parent``: the parent died without closing the pipe
    while this worker was busy generating."""
    def kill_group() -> None:
        try:
            os.killpg(os.getpgid(0), signal.SIGKILL)
        finally:
            os._exit(1)

    def loop() -> None:
        while os.getppid() == parent:
            time.sleep(every_s)
        (on_orphan or kill_group)()

    t = threading.Thread(target=loop, name="vllm-worker-parent-watch", daemon=True)
    t.start()
    return t


def worker_main() -> int:  # pragma: no cover - runs in the subprocess
    watch_parent(os.getppid())
    out = os.fdopen(os.dup(1), "wb", buffering=0)  # protocol channel (not inherited)
    os.dup2(2, 1)  # everything printed from now on (vLLM logs) goes to the log file
    inp = sys.stdin.buffer
    llm = None
    try:
        cfg = recv(inp)
        import vllm
        from vllm import LLM
        from vllm.lora.request import LoRARequest

        t0 = time.monotonic()
        llm = LLM(model=cfg["model"], **cfg["engine_kwargs"])
        loras: dict[str, Any] = {}
        for name, path in cfg["adapters"].items():
            loras[name] = LoRARequest(name, len(loras) + 1, path)
        send(out, {"status": "ready", "startup_s": time.monotonic() - t0, "vllm": vllm.__version__,
                   "pid": os.getpid(), "adapters": list(loras)})
    except BaseException:
        send(out, {"status": "error", "error": traceback.format_exc()})
        return 1
    while True:
        try:
            req = recv(inp)
        except EOFError:
            break
        if req.get("op") == "close":
            break
        try:
            op = OPS.get(req.get("op", "generate"))
            if op is None:
                raise ValueError(f"unknown op {req.get('op')!r}; choose from {', '.join(OPS)}")
            send(out, {"status": "ok", "outputs": op(llm, loras, req)})
        except Exception:
            send(out, {"status": "error", "error": traceback.format_exc()})
    try:
        del llm
        import gc

        gc.collect()
    finally:
        return 0


if __name__ == "__main__":
    if "--worker" in sys.argv[1:]:
        sys.exit(worker_main())
    print(f"usage: python -m {WORKER_MODULE} --worker  (started by VLLMEngine)", file=sys.stderr)
    sys.exit(2)
