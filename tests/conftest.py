"""Shared test settings.

- ``data_dir``: the public spend/return logs (``$DARA_DATA_DIR`` if set, else the copies
  shipped in ``tools/envs/datasets``).
- ``require(module)``: optional components (vllm, langgraph-cli) are skipped when missing
  locally, but under ``CI=true`` a missing component fails the run instead of skipping.
- No test may touch the network: ``HF_HUB_OFFLINE`` is forced on.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path

import pytest

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
