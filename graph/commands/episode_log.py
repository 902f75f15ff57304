"""``episodes.jsonl``: one whole JSON line per finished episode, durable across kills.

A batch may be killed at any moment (SIGKILL, out of memory), so a line is written with a
single ``write`` and ``fsync`` under a lock (:class:`EpisodeWriter`), and a torn last line
left by a kill mid-write is cut off on the next read (:func:`repair_and_read`). The line
of an episode (:func:`episode_record`) keeps what an analyst needs without the
checkpoints: every round's proposal, text, error, allocation, feedback and source, and
the per-round metrics.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

from graph.context import Context

EPISODES = "episodes.jsonl"
METRICS = ("regret", "mroi_var", "dispersion")


def repair_and_read(path: Path) -> list[dict]:
    """Read finished episodes; truncate a torn last line (a kill mid-write)."""
    if not path.exists():
        return []
    data = path.read_bytes()
    cut = data.rfind(b"\n") + 1
    if cut < len(data):  # torn tail: drop it
        with open(path, "r+b") as f:
            f.truncate(cut)
            f.flush()
            os.fsync(f.fileno())
        data = data[:cut]
    out = []
    for n, line in enumerate(data.splitlines(), 1):
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}:{n}: corrupt line ({e}); remove it and rerun with --resume") from None
    return out


class EpisodeWriter:
    """Appends one whole JSON line per episode: one ``write`` + ``fsync`` under a lock."""

    def __init__(self, path: Path):
        self.path = path
        self.lock = threading.Lock()
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def write(self, record: dict) -> None:
        line = (json.dumps(record, separators=(",", ":")) + "\n").encode()
        with self.lock:
            os.write(self.fd, line)
            os.fsync(self.fd)

    def close(self) -> None:
        os.close(self.fd)


def episode_record(eid: str, values: dict, ctx: Context, seconds: float) -> dict:
    """The ``episodes.jsonl`` line of a finished episode from its final state ``values``."""
    rounds = values.get("rounds") or []
    rec = {
        "id": eid,
        "status": "ok",
        "reasoner": ctx.reasoner,
        "optimizer": ctx.optimizer,
        "rounds": [
            {
                "round": r["round"], "source": r["source"], "proposal": r.get("proposal"),
                "allocation": r["allocation"], "mroi": r["mroi"], "text": r.get("text", ""),
                "error": r.get("error"),
                "budget_reasons": (r.get("budget") or {}).get("reasons", []),
                "flags": r.get("flags") or [],
                **({"no_plan": True} if r.get("no_plan") else {}),
                **({"rejected_answers": r["rejected_answers"]} if r.get("rejected_answers") else {}),
            }
            for r in rounds
        ],
        "stop_reason": values.get("stop_reason"),
        "seconds": round(seconds, 3),
        "env": values.get("env"),
    }
    for m in METRICS:
        rec[m] = [(r.get("metrics") or {}).get(m) for r in rounds]
    if values.get("oracle"):
        rec["oracle"] = values["oracle"]
    return rec


def error_record(eid: str, error: BaseException) -> dict:
    """The line of an episode that failed outright (recorded, never fatal for the batch).
    An error raised elsewhere (a server run) names its own type in ``remote_type``."""
    kind = getattr(error, "remote_type", None) or type(error).__name__
    return {"id": eid, "status": "error", "error": f"{kind}: {error}", "rounds": [],
            **{m: [] for m in METRICS}}
