"""Which episodes a batch runs: ``(episode id, graph input)`` pairs.

An episode id names a graph thread and an ``episodes.jsonl`` line, so ids are stable
functions of what the episode is (family, seed, index): a resumed batch finds its
finished episodes by id.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

Episode = tuple[str, dict[str, Any]]
SYNTHETIC = ("quadratic", "exponential", "hill", "media")
"""Families whose size is set by ``periods`` and ``budget`` (the others come from data)."""


def batch_episodes(env) -> list[Episode]:
    """One episode per environment of an ``EnvBatch`` (simulator feedback from its spec)."""
    spec = json.loads(json.dumps(env.spec))  # plain JSON types only
    return [(f"{spec['family']}-s{spec['seed']}-{i:05d}", {"env": {**spec, "index": i}})
            for i in range(env.n)]


def family_episodes(family: str, n: int, *, seed: int = 0, periods: int = 6, budget: float = 6.0,
                    noise: float = 0.0, history: int = 3) -> list[Episode]:
    """Environments ``0..n-1`` of ``family`` (``periods``/``budget`` for synthetic families)."""
    from tools.envs import make_envs

    if n < 1:
        raise ValueError(f"--episodes must be >= 1, got {n}")
    kw = {"periods": periods, "budget": budget} if family in SYNTHETIC else {}
    return batch_episodes(make_envs(family, n, seed=seed, noise=noise, history=history, **kw))


def task_episodes(path: str | Path) -> list[Episode]:
    """Episodes from a JSONL file: ``{"id"?, "task"?, "env"}`` per line."""
    from graph.feedback import normalise_env
    from tools.task import Task

    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"--tasks file not found: {p}")
    out, seen = [], set()
    for n, line in enumerate(p.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{p}:{n}: not valid JSON ({e})") from None
        if not isinstance(obj, dict):
            raise ValueError(f"{p}:{n}: expected an object, got {type(obj).__name__}")
        if "env" not in obj:
            raise ValueError(
                f"{p}:{n}: no 'env': dara run observes feedback from a simulator, so each line needs "
                "{\"task\"?: {...}, \"env\": {<EnvBatch spec>, \"index\": i}}; for one real task with "
                "live feedback use 'dara allocate --task task.json --live'"
            )
        eid = str(obj.get("id", f"task-{n:05d}"))
        if eid in seen:
            raise ValueError(f"{p}:{n}: duplicate id {eid!r}")
        seen.add(eid)
        inp: dict[str, Any] = {"env": normalise_env(obj["env"])}
        if obj.get("task") is not None:
            try:
                inp["task"] = Task.model_validate(obj["task"]).model_dump(exclude_none=True)
            except ValueError as e:
                raise ValueError(f"{p}:{n}: bad task: {e}") from None
        out.append((eid, inp))
    if not out:
        raise ValueError(f"{p}: no episodes")
    return out
