"""The GRPO step's log line (``OUT/log.jsonl``), from every rank's per-row arrays.

Kept apart from :mod:`training.grpo` so the trainer reads as the algorithm; the keys are
listed in docs/training.md ("GRPO-A").
"""

from __future__ import annotations

import time

import numpy as np
import torch

from training.rewards import TERMS, parse_error_rate


def log_row(step: int, rows: dict[str, np.ndarray], P: int, G: int, first: dict, lr: float,
            refreshed: bool, dt: float, t_gen: float) -> dict:
    """The step's log line from its per-row arrays (all ``P * G`` completions): reward
    ``total``, the reward terms, ``ok`` (parsed), ``len`` (completion tokens), ``hold``
    (env term of holding the current plan); ``first`` holds the first pass's loss stats."""
    total, ok = rows["total"], rows["ok"]
    rewards = torch.tensor(total, dtype=torch.float32).view(P, G)
    return {
        "step": step,
        "train/reward": float(total.mean()),
        **{f"train/reward/{k}": float(rows[k].mean()) for k in TERMS + ("slip", "regret")},
        # unweighted: share of the current plan's gap the answers closed, and their regret
        "train/value_gain": float(rows["value_gain"][ok].mean()) if ok.any() else float("nan"),
        "train/answer_regret": float(rows["answer_regret"][ok].mean()) if ok.any() else float("nan"),
        "train/reward_std": float(rewards.std(dim=1).mean()),
        # what the answers gained over holding the current plan (comparable across steps)
        "train/env_gain": float(np.mean((rows["env"] - rows["hold"])[ok])) if ok.any() else float("nan"),
        "train/frac_groups_zero_std": float((rewards.std(dim=1) == 0).float().mean()),
        "train/kl": first["kl"],
        # share of the policy's mass on the tokens the answer format allows (1 = it writes
        # the format by itself; falls when constrained sampling lets the format drift)
        "train/format_mass": first.get("format_mass"),
        "train/clip_frac": first["clip_frac"],
        "train/loss": first["loss"],
        "train/grad_norm": first["grad_norm"],
        "train/lr": lr,
        "train/completion_len": float(rows["len"].mean()),
        "train/parse_error_rate": parse_error_rate(ok),
        # answers the reward scored as copy slips (0 unless reward.slip_penalty is on)
        "train/slip_rate": float((rows["slip"] < 0).mean()),
        "ref_refreshed": bool(refreshed),
        "train/s_per_step": dt,
        "train/s_generate": t_gen,
        "time": time.time(),
    }
