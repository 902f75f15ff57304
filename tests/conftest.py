"""Shared test settings.

- ``data_dir``: the public spend/return logs (``$DARA_DATA_DIR`` if set, else the copies
  shipped in ``tools/envs/datasets``).
- ``require(module)``: optional components (vllm, langgraph-cli) are skipped when missing
  locally, but under ``CI=true`` a missing component fails the run instead of skipping.
- No test may touch the network: ``HF_HUB_OFFLINE`` is forced on.
- ``fake_reward``: GRPO's reward replaced by deterministic varied rewards (a random tiny
  model never writes a parseable answer, so the real reward gives every group one value).
- ``langgraph_dev(log)``: a real ``langgraph dev`` serving this checkout on loopback
  (the Studio and ``dara run --server`` tests).
"""

from __future__ import annotations

import contextlib
import importlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def require(module: str):
    """Import an optional module, skipping locally and failing under CI when absent."""
    try:
        return importlib.import_module(module)
    except ImportError as e:  # pragma: no cover - depends on the machine
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"optional component {module!r} is required under CI=true: {e}")
        pytest.skip(f"{module} not installed")


def load_benchmark(name: str):
    """Import ``benchmarks/<name>.py`` (a script, not a package) as a module."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def langgraph_dev(log_path: Path, *, jobs: int = 1, start_timeout: float = 120.0):
    """A real ``langgraph dev`` on a free 127.0.0.1 port, serving this checkout's
    ``langgraph.json``; yields its URL and stops its whole process group at the end.

    The working directory is the repository root (the config's graph path is relative to
    it, and the server keeps its state in ``.langgraph_api/`` there); no browser, no
    reloader, no tracing, offline, this checkout first on ``PYTHONPATH`` (so an editable
    install of another checkout is not what the server imports); ``jobs`` runs at once."""
    require("langgraph_cli")
    exe = shutil.which("langgraph", path=str(Path(sys.executable).parent)) or shutil.which("langgraph")
    if exe is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("langgraph CLI executable not found")
        pytest.skip("langgraph CLI executable not found")
    port = free_port()
    env = {**os.environ, "LANGSMITH_TRACING": "false", "LANGCHAIN_TRACING_V2": "false", "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])}
    log = open(log_path, "wb")
    proc = subprocess.Popen(
        [exe, "dev", "--port", str(port), "--host", "127.0.0.1", "--no-browser", "--no-reload",
         "--n-jobs-per-worker", str(jobs), "--config", str(REPO / "langgraph.json")],
        cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + start_timeout
        while True:
            try:
                with urllib.request.urlopen(url + "/ok", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.time() > deadline:
                log.flush()
                pytest.fail("langgraph dev did not start:\n" + Path(log_path).read_text()[-3000:])
            time.sleep(0.5)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


@pytest.fixture(scope="session")
def data_dir() -> Path:
    from tools.envs.spend_logs import data_dir as logs_dir

    d = logs_dir()
    if not d.is_dir():
        pytest.fail(f"spend/return log directory {d} does not exist (check DARA_DATA_DIR)")
    return d


def make_test_lora(path, seed):
    """A PEFT LoRA (r=8, q/v) on the embedded model with non-zero weights, saved at ``path``
    (the vLLM and OpenAI-server tests serve it)."""
    import torch
    from peft import LoraConfig, get_peft_model

    from policies.models import load_base

    model, _ = load_base("embedded", cache=False)
    torch.manual_seed(seed)
    cfg = LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"],
                     init_lora_weights=False, task_type="CAUSAL_LM")
    get_peft_model(model, cfg).save_pretrained(str(path))
    return str(path)


@pytest.fixture
def clean_policies():
    """Unregister, when the test ends, every custom policy it registered (directly or
    through ``graph.api.run_episode`` with a policy object), so none leaks into the next."""
    from graph.policy_registry import registered_policies, unregister_policy

    before = set(registered_policies())
    yield
    for name in set(registered_policies()) - before:
        unregister_policy(name)


@pytest.fixture
def register_policy(clean_policies):
    """``graph.policy_registry.register_policy`` for one test (see ``clean_policies``)."""
    from graph.policy_registry import register_policy as register

    return register


def fake_score(texts, requests, mroi_fn, encoding=None, cfg=None, value_fn=None, best_value=None):
    """Deterministic varied rewards with :func:`training.rewards.score`'s signature."""
    import zlib

    import numpy as np

    from training.rewards import TERMS, parse_completions

    p = parse_completions(texts, requests, encoding)
    total = np.array([(zlib.crc32(t.encode()) % 1000) / 100.0 for t in texts])
    terms = {k: total / len(TERMS) for k in TERMS}
    terms.update(slip=np.zeros_like(total), regret=np.zeros_like(total), value_gain=np.zeros_like(total), answer_regret=np.zeros_like(total))
    return total, terms, p


@pytest.fixture
def fake_reward(monkeypatch):
    from training import grpo

    monkeypatch.setattr(grpo, "score", fake_score)
