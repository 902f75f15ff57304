"""Every bad input through the real ``dara`` command (a subprocess): exit 2, exactly one
line on stderr naming the problem, no traceback, pydantic URL or numpy repr, and nothing
written. No case loads a model: adapter, base and server checks come first."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TASK = {"budget": 100000, "periods": 3, "labels": ["search", "social", "tv"],
        "history": [{"allocation": [30000, 35000, 35000], "mroi": [2.9, 1.35, 0.62]},
                    {"allocation": [35000, 33000, 32000], "mroi": [2.75, 1.32, 0.63]}]}


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _task(**change) -> str:
    return json.dumps({**TASK, **change})


# (command line, what the one stderr line must contain); files: t.json (a good task),
# bad.json (written from the third element when given), out_file (an existing file), a_dir/.
CASES = [
    ("allocate --task t.json --reasoner-adapter /nonexistent/adapter", "--reasoner-adapter /nonexistent/adapter", None),
    ("allocate --task t.json --optimizer-adapter a_dir --live", "--optimizer-adapter a_dir: has no adapter_config", None),
    ("allocate --task t.json --base /nonexistent/model", "--base /nonexistent/model: no such model directory", None),
    ("allocate --task t.json --backend openai", "--backend openai: no server answers", None),
    ("allocate --task t.json --json a_dir", "--json a_dir: is a directory", None),
    ("allocate --task t.json --json out_file/plan.json", "--json out_file/plan.json:", None),
    ("allocate --task t.json --plot plan.txt", "--plot plan.txt: unknown image type", None),
    ("allocate --task a_dir", "--task a_dir: is a directory", None),
    ("allocate --task missing.json", "--task missing.json: file not found", None),
    ("allocate --task bad.json", "periods = true: expected a whole number", _task(periods=True)),
    ("allocate --task bad.json", "budget = \"300\": expected a number", _task(budget="300")),
    ("allocate --task bad.json", "history = []: expected at least one record", _task(history=[])),
    ("allocate --task bad.json", "history[1].mroi[2]", _task(history=[
        TASK["history"][0], {"allocation": [30000, 35000, 35000], "mroi": [1, 2, "x"]}])),
    ("allocate --task bad.json", "not valid JSON", "{\"budget\": 1,"),
    ("allocate --task bad.json", "lower: bounds cannot sum to budget", _task(lower=[50000, 50000, 50000])),
    ("allocate --task t.json --rounds 0", "--rounds 0: expected a whole number >= 1", None),
    ("allocate --task t.json --rounds 3", "--rounds 3: without feedback", None),
    ("allocate --task t.json --family nosuch", "unknown family 'nosuch'", None),
    ("allocate --task t.json --fallback hold", "argument --fallback: invalid choice: 'hold'", None),
    ("allocate --task t.json --window x", "argument --window", None),
    ("run --out out_file", "--out out_file: is a file", None),
    ("run --out new_run --family nosuch", "--family nosuch: unknown family", None),
    ("run --out new_run --reasoner-adapter /nonexistent/adapter", "--reasoner-adapter /nonexistent/adapter", None),
    ("run --out new_run --base /nonexistent/model", "--base /nonexistent/model", None),
    ("run --out new_run --backend openai", "--backend openai: no server answers", None),
    ("run --out new_run --episodes 0", "--episodes 0: expected a whole number >= 1", None),
    ("run --out new_run --budget nan", "--budget nan: expected a finite number", None),
    ("run --out new_run --tasks bad.json", "bad.json:1: not valid JSON", "{oops\n"),
    ("bench --json a_dir", "--json a_dir: is a directory", None),
    ("bench --plot a_dir", "--plot a_dir: is a directory", None),
    ("bench --family nosuch", "--family nosuch: unknown family", None),
    ("bench --periods 0", "--periods 0: expected a whole number >= 1", None),
    ("bench --budget -1", "--budget -1: expected a finite number > 0", None),
    ("bench --budget nan", "--budget nan: expected a finite number", None),
    ("bench --envs 0", "--envs 0: expected a whole number >= 1", None),
    ("bench --policies nosuch", "--policies nosuch: unknown method", None),
    ("bench --policies dara --reasoner-adapter /nonexistent/adapter", "--reasoner-adapter /nonexistent/adapter", None),
    ("bench --policies uniform --optimizer-adapter /nonexistent/adapter", "--optimizer-adapter", None),
    ("bench --policies dara --backend openai", "--backend openai: no server answers", None),
    ("bench --policies dara --base /nonexistent/model", "--base /nonexistent/model", None),
    ("propose --role reasoner --task t.json --adapter /nonexistent/adapter", "--adapter /nonexistent/adapter", None),
    ("propose --role reasoner --task t.json --backend openai", "--backend openai: no server answers", None),
    ("propose --role reasoner --task t.json --base /nonexistent/model", "--base /nonexistent/model", None),
    ("propose --role reasoner --task t.json --json a_dir", "--json a_dir: is a directory", None),
    ("propose --role reasoner --task bad.json", "periods = true", _task(periods=True)),
    ("propose --role optimizer --task t.json --window-file bad.json", "--window-file bad.json", "[{\"allocation\": [1]}]"),
    ("nosuch", "unknown command", None),
]


def _snapshot(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_size for p in root.rglob("*")}


@pytest.mark.parametrize("argv, expected, bad_file", CASES, ids=[f"{c[0]}" for c in CASES])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, argv, expected, bad_file):
    (tmp_path / "t.json").write_text(json.dumps(TASK))
    (tmp_path / "out_file").write_text("keep me")
    (tmp_path / "a_dir").mkdir()
    if bad_file is not None:
        (tmp_path / "bad.json").write_text(bad_file)
    before = _snapshot(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "MPLBACKEND": "Agg",
           "DARA_OPENAI_BASE_URL": f"http://127.0.0.1:{_closed_port()}/v1"}
    r = subprocess.run([sys.executable, "-m", "graph.commands.cli", *argv.split()], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=120)
    lines = r.stderr.splitlines()
    assert r.returncode == 2, (r.returncode, r.stderr[-2000:])
    assert len(lines) == 1, r.stderr
    assert expected in lines[0], lines[0]
    for junk in ("Traceback", "errors.pydantic.dev", "np.float64", "For further information"):
        assert junk not in r.stderr
    assert r.stdout == ""
    assert _snapshot(tmp_path) == before  # nothing written, nothing created
