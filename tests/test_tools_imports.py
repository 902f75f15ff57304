"""``tools/`` is the light bottom layer: importing every module of it loads no torch, no
model or LLM code, and nothing from the layers above it."""

from __future__ import annotations

import pkgutil
import subprocess
import sys
from pathlib import Path

import tools

FORBIDDEN = ("torch", "transformers", "peft", "vllm", "langchain_openai", "langgraph", "policies", "graph",
             "training")


def test_tools_imports_no_torch_llm_or_upper_layers():
    names = [m.name for m in pkgutil.walk_packages(tools.__path__, "tools.")]
    assert {"tools.envs.cache", "tools.envs.response_fit", "tools.langchain_tools"} <= set(names)
    probe = (
        "import importlib, sys\n"
        f"for name in {names!r}: importlib.import_module(name)\n"
        f"print(sorted(m for m in {FORBIDDEN!r} if m in sys.modules))\n"
    )
    root = Path(tools.__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-c", probe], cwd=root, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
