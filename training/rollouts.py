"""Training prompts: Reasoner few-shot tasks and chained Optimizer windows.

Both trainers draw batches of :class:`Prompts` from a :class:`PromptSource`:

- **Reasoner**: a task from any environment family; the window is the task's few-shot
  history (``DecisionRequest(role="reasoner", window=task.history)``).
- **Optimizer**: windows from *chaining*. Round 1 is played from the history by a
  Reasoner (an LLM policy, or a numeric stand-in — by default the ``local-model``
  teacher), each later round by the chain policy from the window it would see; each
  allocation goes through the budget tool's projection and the environment returns
  (possibly noisy) feedback. The records pool is ``history + rounds`` and the window
  for a decision at round ``k`` is the last ``w`` records of ``pool[: H + k - 1]``
  (round 2's window = 2 history records + round 1, ``architecture.md``). The decision
  round ``k`` is sampled uniformly from ``2..max_rounds`` so the Optimizer sees early,
  coarse windows and late, nearly converged ones. Chained allocations get Gaussian
  noise (``teacher_noise`` units of B/T) before projection, so windows also show the
  imperfect plans a learning model will produce.

Everything is seeded and vectorised: ``PromptSource(cfg, seed).batch(n, step)`` is a
pure function of ``(cfg, seed, step)`` (the environment pool is generated once), which
is what makes resumed training reproduce the same next batch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from policies.base import DecisionRequest
from tools.envs import EnvBatch, make_envs
from tools.task import Record, Task
from training.config import RolloutConfig

ChainFn = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray], np.ndarray]
"""``fn(win_alloc (N,w,T), win_mroi (N,w,T), budget (N,), lower (N,T), upper (N,T)) -> (N,T)``."""


def baseline_chain(name: str = "local-model") -> ChainFn:
    """A numeric policy as a chain function (``policies.baselines.propose_arrays``)."""
    from policies.baselines import propose_arrays

    def fn(wa, wm, budget, lower, upper):
        return propose_arrays(name, wa, wm, budget, lower, upper)

    return fn


@dataclass
class Prompts:
    """A batch of decision requests plus the arrays rewards and teachers need.

    ``env`` rows align with ``requests``; ``win_alloc``/``win_mroi`` are the windows the
    prompts show ``(N, w, T)`` (task units); ``round`` is the decision's round (1 for the
    Reasoner); ``family`` names each row's environment family.
    """

    role: str
    requests: list[DecisionRequest]
    envs: list[EnvBatch]
    env_index: np.ndarray  # (N,) which entry of ``envs`` each row comes from
    env_row: np.ndarray  # (N,) row inside that EnvBatch
    win_alloc: np.ndarray
    win_mroi: np.ndarray
    budget: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    round: np.ndarray
    family: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.requests)

    def _per_env(self, fn, out: np.ndarray, sel: np.ndarray | None = None) -> np.ndarray:
        """Fill ``out[rows]`` with ``fn(sub_env, rows_mask)`` for each environment batch the
        rows come from (``sel`` restricts the rows)."""
        sel = np.ones(len(self), bool) if sel is None else np.asarray(sel, bool)
        for k, env in enumerate(self.envs):
            m = sel & (self.env_index == k)
            if m.any():
                out[m] = fn(env.subset(self.env_row[m]), m)
        return out

    def mroi(self, alloc: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
        """Noiseless MROI ``(N,T)`` of allocations (task units) for every row (or ``rows``)."""
        alloc = np.asarray(alloc, float)
        return self._per_env(lambda sub, m: sub.mroi(alloc[m]), np.zeros_like(alloc), rows)

    def value(self, alloc: np.ndarray) -> np.ndarray:
        """Hidden value ``V`` ``(N,)`` of allocations (task units), per row's environment."""
        alloc = np.asarray(alloc, float)
        return self._per_env(lambda sub, m: sub.value(alloc[m]), np.zeros(len(self)))

    def best_value(self) -> np.ndarray:
        """``V`` at the water-filling optimum ``(N,)`` (known to the simulator only)."""
        from tools.oracle import oracle_allocation

        return self._per_env(lambda sub, m: sub.value(oracle_allocation(sub)), np.zeros(len(self)))

    def teacher(self, name: str = "local-model") -> np.ndarray:
        """The numeric teacher's feasible allocation per row (it sees only the window)."""
        from tools.budget import project

        raw = baseline_chain(name)(self.win_alloc, self.win_mroi, self.budget, self.lower, self.upper)
        return project(raw, self.budget, self.lower, self.upper)

    def repeat(self, g: int) -> "Prompts":
        """Each row repeated ``g`` times in place (GRPO groups)."""
        return self.rows(np.repeat(np.arange(len(self)), g))

    def rows(self, idx) -> "Prompts":
        """The rows ``idx``, in that order (e.g. one data-parallel rank's slice of a step)."""
        idx = np.asarray(idx, dtype=int)
        return Prompts(
            self.role, [self.requests[i] for i in idx], self.envs, self.env_index[idx], self.env_row[idx],
            self.win_alloc[idx], self.win_mroi[idx], self.budget[idx], self.lower[idx], self.upper[idx],
            self.round[idx], [self.family[i] for i in idx] if self.family else [],
        )


def _task_of(env: EnvBatch, i: int) -> Task:
    """Environment ``i`` as a Task (with its history; the request's window is what a prompt shows)."""
    return env.task(i)


def _records(alloc: np.ndarray, mroi: np.ndarray) -> list[Record]:
    return [Record(allocation=[float(x) for x in a], mroi=[float(x) for x in r]) for a, r in zip(alloc, mroi)]


def chain_pool(env: EnvBatch, rounds: int, chain: ChainFn, window: int, teacher_noise: float,
               rng: np.random.Generator, first: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Play ``rounds`` rounds on every environment; returns the records pool
    ``(alloc, mroi)`` of shape ``(N, H + rounds, T)`` (history first).

    Round 1 sees the whole history (the Reasoner's view) unless ``first`` (N,T) gives its
    allocation (e.g. an LLM Reasoner's); later rounds see the last ``window`` records.
    """
    from tools.budget import project

    A, M = env.hist_alloc.copy(), env.hist_mroi.copy()
    unit = (env.budget / env.periods)[:, None]
    for k in range(1, rounds + 1):
        if k == 1 and first is not None:
            prop = np.asarray(first, float)
        else:
            wa, wm = (A, M) if k == 1 else (A[:, -window:], M[:, -window:])
            prop = chain(wa, wm, env.budget, env.lower, env.upper)
        if teacher_noise > 0:
            prop = prop + teacher_noise * unit * rng.standard_normal(prop.shape)
        b = project(np.maximum(prop, 0.0), env.budget, env.lower, env.upper)
        r = env.observe(b, rng)
        A = np.concatenate([A, b[:, None]], axis=1)
        M = np.concatenate([M, r[:, None]], axis=1)
    return A, M


class PromptSource:
    """Seeded prompt batches for one role (see the module docstring)."""

    def __init__(self, cfg: RolloutConfig, role: str, seed: int = 0, chain: ChainFn | None = None,
                 reasoner=None):
        """``chain`` plays rounds 2.. (default: ``cfg.chain_policy``); ``reasoner`` (any
        ``policies.base.Policy``, e.g. an ``LLMPolicy`` with the trained Reasoner adapter)
        plays round 1 of Optimizer chains from the history; its unparseable answers fall
        back to ``chain``."""
        if role not in ("reasoner", "optimizer"):
            raise ValueError(f"role must be 'reasoner' or 'optimizer', got {role!r}")
        self.cfg, self.role, self.seed = cfg, role, int(seed)
        self.chain = chain if chain is not None else baseline_chain(cfg.chain_policy)
        self.reasoner = reasoner
        self.envs: list[EnvBatch] = []
        from training.distribution import is_generalist

        self.generalist = is_generalist(cfg)
        for j, fam in enumerate([] if self.generalist else cfg.families):
            self.envs.append(make_envs(fam, cfg.env_pool, periods=cfg.periods, budget=cfg.budget,
                                       seed=cfg.env_seed + 7919 * j, noise=cfg.noise, history=cfg.history))
        self._tasks: dict[tuple[int, int], Task] = {}

    def _task(self, k: int, i: int) -> Task:
        key = (k, i)
        if key not in self._tasks:
            self._tasks[key] = _task_of(self.envs[k], i)
        return self._tasks[key]

    def batch(self, n: int, step: int) -> Prompts:
        """``n`` prompts for ``step`` — a pure function of ``(cfg, seed, step)``."""
        if self.generalist:
            from training.distribution import generalist_batch

            return generalist_batch(self, n, step)
        rng = np.random.default_rng(np.random.SeedSequence(self.seed, spawn_key=(int(step),)))
        fam = rng.integers(0, len(self.envs), size=n)
        rows = rng.integers(0, self.cfg.env_pool, size=n)
        parts = []
        for k in range(len(self.envs)):
            m = np.nonzero(fam == k)[0]
            if m.size:
                parts.append((k, m, self._family_batch(k, rows[m], rng)))
        # data families keep their own slot count, so T comes from the environments
        T = self.envs[0].periods
        if any(e.periods != T for e in self.envs):
            raise ValueError("families " + ", ".join(self.cfg.families) + " have different slot counts "
                             f"({sorted({e.periods for e in self.envs})}); a fixed pool needs one T "
                             "(use periods_range for mixed T)")
        w = self.cfg.history if self.role == "reasoner" else self.cfg.window
        WA, WM = np.zeros((n, w, T)), np.zeros((n, w, T))
        rnd = np.ones(n, int)
        for k, m, (wa, wm, rk) in parts:
            WA[m], WM[m], rnd[m] = wa, wm, rk
        env_index, env_row = fam, rows
        reqs = []
        for i in range(n):
            task = self._task(int(env_index[i]), int(env_row[i]))
            reqs.append(DecisionRequest(self.role, task, _records(WA[i], WM[i])))  # type: ignore[arg-type]
        budget = np.array([self.envs[k].budget[r] for k, r in zip(env_index, env_row)])
        lower = np.stack([self.envs[k].lower[r] for k, r in zip(env_index, env_row)])
        upper = np.stack([self.envs[k].upper[r] for k, r in zip(env_index, env_row)])
        return Prompts(self.role, reqs, self.envs, env_index, env_row, WA, WM, budget, lower, upper,
                       rnd, [self.cfg.families[k] for k in env_index])

    def _family_batch(self, k: int, rows: np.ndarray, rng: np.random.Generator):
        env = self.envs[k].subset(rows)
        if self.role == "reasoner":
            return env.hist_alloc, env.hist_mroi, np.ones(len(rows), int)
        cfg = self.cfg
        first = None
        if self.reasoner is not None:
            first = self.chain(env.hist_alloc, env.hist_mroi, env.budget, env.lower, env.upper)
            reqs = [DecisionRequest("reasoner", self._task(k, int(r)), _records(a, m))
                    for r, a, m in zip(rows, env.hist_alloc, env.hist_mroi)]
            for i, d in enumerate(self.reasoner.propose(reqs)):
                if d.allocation is not None:
                    first[i] = d.allocation
        A, M = chain_pool(env, cfg.max_rounds - 1, self.chain, cfg.window, cfg.teacher_noise, rng, first=first)
        H = env.history
        k_round = rng.integers(2, cfg.max_rounds + 1, size=len(rows))  # decision round
        end = H + k_round - 1  # records available before deciding round k
        idx = end[:, None] - cfg.window + np.arange(cfg.window)[None, :]
        if (idx < 0).any():
            raise ValueError(f"window={cfg.window} needs at least {cfg.window - 1} history records, "
                             f"got history={H}")
        r_ = np.arange(len(rows))[:, None]
        return A[r_, idx], M[r_, idx], k_round


def heldout_prompts(role: str, family: str = "quadratic", n: int = 64, seed: int = 12345,
                    cfg: RolloutConfig | None = None) -> Prompts:
    """A fixed evaluation batch from a seed the training pool does not use."""
    base = cfg or RolloutConfig()
    c = RolloutConfig(**{**base.__dict__, "families": [family], "env_pool": n, "env_seed": seed})
    return PromptSource(c, role, seed=seed).batch(n, 0)
