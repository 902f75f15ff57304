"""Run-time knobs of a DARA episode: LangGraph's runtime *context* (``context_schema=``).

Everything that says *how* to run an episode (which policies, which model, window,
rounds, stopping rule, feedback provider, seed) lives here, not in the state: the state
holds only what happened (JSON), so it survives checkpointers and Studio. Nodes read it
as ``runtime.context`` (``Runtime[Context]``). Studio shows these fields (with their help
text) in the assistant's context editor; the CLI builds one from its flags; the Python
API from keyword arguments.

Validation happens once, in ``__post_init__``, and names the bad field and value. An
unknown field is an error listing the known ones, whichever way the context is built:
``Context(**d)`` (what LangGraph does with ``graph.invoke(..., context=d)``),
:meth:`Context.from_dict`, or the Studio server (``graph.graph.studio_graph``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any, Literal, get_args

from pydantic import ConfigDict

from graph.policy_registry import registered_policies
from policies.prompts import ENCODINGS, Encoding

Backend = Literal["local", "vllm", "openai"]
"""Chat-model backends of 'llm' policies (``policies.backends``)."""
BACKENDS: tuple[str, ...] = get_args(Backend)
Feedback = Literal["simulator", "live"]
"""Where observed MROI comes from (``graph.feedback``)."""
FEEDBACKS: tuple[str, ...] = get_args(Feedback)


def _baselines() -> tuple[str, ...]:
    from policies.baselines import BASELINES

    return BASELINES


def _numeric_policies() -> str:
    extra = sorted(registered_policies())
    return ", ".join(_baselines()) + (f" or a registered one ({', '.join(extra)})" if extra else "")


def unknown_fields_error(keys) -> ValueError | None:
    """The error for context keys that are not fields (None when all are known)."""
    names = sorted(f.name for f in fields(Context))
    unknown = sorted(set(keys) - set(names))
    if not unknown:
        return None
    return ValueError(f"unknown context field(s) {', '.join(unknown)}; known: {', '.join(names)}")


@dataclass(kw_only=True)
class Context:
    """How to run one DARA episode (Reasoner -> budget tool -> environment -> Optimizer ...)."""

    # The published JSON schema (Studio's context editor) says unknown keys are not allowed.
    __pydantic_config__ = ConfigDict(extra="forbid")

    reasoner: str = field(
        default="llm",
        metadata={
            "description": "Policy for round 1 (the Few-shot Reasoner): 'llm' (chat model on "
            "`backend` with the reasoner adapter) or a numeric baseline: uniform, heuristic, "
            "gradient, local-model (or a name registered with graph.api.register_policy)."
        },
    )
    optimizer: str = field(
        default="llm",
        metadata={
            "description": "Policy for rounds 2..K (the Fine-grained Optimizer): 'llm' or a "
            "baseline name (see `reasoner`)."
        },
    )
    backend: Backend = field(
        default="local",
        metadata={"description": "Chat-model backend for 'llm' policies: local (HF + PEFT, "
                  "batched), vllm (offline engine), openai (OpenAI-compatible server)."},
    )
    base: str = field(
        default="embedded",
        metadata={"description": "Base model: 'embedded' (SmolLM2-135M shipped in a wheel), "
                  "'tiny-random' (tests) or an HF model directory / served model name."},
    )
    base_url: str | None = field(
        default=None,
        metadata={"description": "Backend openai only: the OpenAI-compatible server's URL, or several "
                  "comma-separated (a fleet serving the same model and adapter names; requests are "
                  "spread round-robin); empty = $DARA_OPENAI_BASE_URL, else http://127.0.0.1:8000/v1."},
    )
    reasoner_adapter: str | None = field(
        default=None,
        metadata={"description": "LoRA adapter directory for the Reasoner; empty = the "
                  "shipped adapter when present, else the base model."},
    )
    optimizer_adapter: str | None = field(
        default=None,
        metadata={"description": "LoRA adapter directory for the Optimizer (see reasoner_adapter)."},
    )
    reasoner_encoding: Encoding | None = field(
        default=None,
        metadata={"description": "Prompt encoding of the Reasoner: absolute, delta, delta-slope or "
                  "delta-hint or delta-hint-last (the hint line last); empty = the one the adapter declares (its dara_adapter.json or its "
                  "training run's config), else absolute."},
    )
    optimizer_encoding: Encoding | None = field(
        default=None,
        metadata={"description": "Prompt encoding of the Optimizer: absolute (the answer is "
                  "the new plan), delta (the answer is a change per slot) delta-slope (delta plus each "
                  "slot's fitted MROI fall per unit) or delta-hint (delta plus the change the local-model "
                  "tool suggests) or delta-hint-last (the hint line last); empty = the one the adapter declares, else delta."},
    )
    window: int = field(
        default=3,
        metadata={"description": "Sliding window w: the Optimizer sees the last w records "
                  "(history followed by applied rounds)."},
    )
    max_rounds: int = field(
        default=5,
        metadata={"description": "K: number of rounds (decisions applied) per episode."},
    )
    tolerance: float = field(
        default=0.0,
        metadata={"description": "Stop early once the observed MROI dispersion "
                  "sum_t |r_t - mean(r)| falls below this; 0 = never stop early. Rounds after "
                  "a stop repeat the last allocation (source 'carried')."},
    )
    approval: bool = field(
        default=False,
        metadata={"description": "Pause before applying each allocation so a human can "
                  "approve it or edit it (resume with true or {\"allocation\": [...]})."},
    )
    feedback: Feedback = field(
        default="simulator",
        metadata={"description": "simulator: observe MROI from the environment in the input "
                  "(`env`); live: pause with the allocation to apply and resume with "
                  "{\"mroi\": [...]} observed on the real campaign."},
    )
    seed: int = field(
        default=0,
        metadata={"description": "Seed of simulator feedback noise (and of sampling when "
                  "temperature > 0)."},
    )
    temperature: float = field(
        default=0.0,
        metadata={"description": "Sampling temperature of 'llm' policies; 0 = greedy. Above 0 the "
                  "local backend samples one prompt at a time, seeded, so an answer does not depend on "
                  "the episodes it is batched with (slower than greedy batches)."},
    )
    resample: int = field(
        default=8,
        metadata={"description": "When the decoder rejects an 'llm' policy's answer (malformed, "
                  "wrong length, an allocation written as a change), ask again up to this many "
                  "times, sampling at temperature 0.7 with seeds 1, 2, ...; the rejected answers "
                  "are kept on the round. 0 = never (the fallback applies at once)."},
    )
    fallback: str | None = field(
        default=None,
        metadata={"description": "When a policy's answer cannot be used (parse error, backend "
                  "failure): empty = hold the current plan and record the round as 'no new plan' "
                  "(source 'fallback'); or a numeric policy (uniform, heuristic, gradient, "
                  "local-model) whose plan is used instead (source 'fallback:<policy>')."},
    )
    on_flag: str = field(
        default="warn",
        metadata={"description": "What a self-check flag does: warn (keep the plan, record the "
                  "flags), or a numeric policy (e.g. local-model) whose plan replaces the flagged "
                  "one (source 'self-check:<policy>', the original kept in 'replaced')."},
    )

    def __new__(cls, *args: Any, **kwargs: Any) -> "Context":
        # LangGraph builds the context as Context(**dict): name unknown keys and the known ones.
        error = unknown_fields_error(kwargs)
        if error is not None:
            raise error
        return super().__new__(cls)

    def __post_init__(self) -> None:
        # Studio and JSON configs send strings/ints loosely: coerce, then validate.
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, str) and v.strip() == "" and f.name.endswith(("_adapter", "_encoding")):
                setattr(self, f.name, None)
        for name in ("reasoner", "optimizer"):
            v = getattr(self, name)
            if not isinstance(v, str) or not v:
                raise ValueError(f"context.{name} must be a policy name, got {v!r}")
            known = ("llm",) + _baselines()
            if v not in known and v not in registered_policies():
                raise ValueError(
                    f"context.{name} = {v!r} is not a policy; choose llm, {', '.join(_baselines())}"
                    + (f" or a registered one ({', '.join(sorted(registered_policies()))})"
                       if registered_policies() else "")
                )
        if self.backend not in BACKENDS:
            raise ValueError(f"context.backend = {self.backend!r}; choose {', '.join(BACKENDS[:-1])} "
                             f"or {BACKENDS[-1]}")
        self._check_base_url()
        for name in ("reasoner_encoding", "optimizer_encoding"):
            v = getattr(self, name)
            if v is not None and v not in ENCODINGS:
                raise ValueError(f"context.{name} = {v!r}; choose {' or '.join(ENCODINGS)}")
        for name, lo in (("window", 1), ("max_rounds", 1), ("resample", 0)):
            v = getattr(self, name)
            if isinstance(v, float) and v.is_integer():
                v = int(v)
                setattr(self, name, v)
            if not isinstance(v, int) or isinstance(v, bool) or v < lo:
                raise ValueError(f"context.{name} must be an integer >= {lo}, got {v!r}")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or self.seed < 0:
            raise ValueError(f"context.seed must be a non-negative integer, got {self.seed!r}")
        for name in ("tolerance", "temperature"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise ValueError(f"context.{name} must be a finite number >= 0, got {v!r}")
            setattr(self, name, float(v))
        if self.feedback not in FEEDBACKS:
            raise ValueError(f"context.feedback = {self.feedback!r}; choose {' or '.join(FEEDBACKS)}")
        if not isinstance(self.approval, bool):
            raise ValueError(f"context.approval must be true or false, got {self.approval!r}")
        if isinstance(self.fallback, str) and not self.fallback.strip():
            self.fallback = None
        if self.fallback is not None:
            self._check_numeric("fallback", self.fallback)
        if self.on_flag != "warn":
            self._check_numeric("on_flag", self.on_flag, "warn or ")

    def _check_base_url(self) -> None:
        if isinstance(self.base_url, str) and not self.base_url.strip():
            self.base_url = None
        if self.base_url is None:
            return
        if not isinstance(self.base_url, str):
            raise ValueError(f"context.base_url must be a URL string, got {self.base_url!r}")
        if self.backend != "openai":
            raise ValueError(f"context.base_url = {self.base_url!r}: only backend openai talks to a model "
                             f"server (backend is {self.backend!r})")
        for url in self.base_url.split(","):
            if not url.strip().startswith(("http://", "https://")):
                raise ValueError(f"context.base_url = {self.base_url!r}: {url.strip()!r} is not an http(s):// URL "
                                 "(several servers are comma-separated)")

    def _check_numeric(self, name: str, value: Any, also: str = "") -> None:
        known = _baselines() + tuple(registered_policies())
        if not isinstance(value, str) or value not in known:
            raise ValueError(f"context.{name} = {value!r}; choose {also}a numeric policy: {_numeric_policies()}")

    # ---- derived values -----------------------------------------------------------------
    def policy_key(self, role: str) -> tuple:
        """What identifies the policy of ``role`` (the per-process policy cache key): every
        setting ``graph.policy_registry.build_policy`` uses, so a cached policy is reused
        only by contexts that would build the same one. The seed seeds sampling, so it is
        part of the key when the temperature is above 0 (greedy decoding ignores it)."""
        name = self.reasoner if role == "reasoner" else self.optimizer
        if name != "llm":
            return (role, name)
        adapter = self.reasoner_adapter if role == "reasoner" else self.optimizer_adapter
        encoding = self.reasoner_encoding if role == "reasoner" else self.optimizer_encoding
        sampling = (self.temperature, self.seed) if self.temperature > 0 else (self.temperature,)
        return (role, name, self.backend, self.base, self.base_url, adapter, encoding, self.resample, *sampling)

    @classmethod
    def from_dict(cls, data: dict | None) -> "Context":
        """Build from a (possibly partial) dict, naming unknown keys."""
        data = dict(data or {})
        error = unknown_fields_error(data)
        if error is not None:
            raise error
        return cls(**data)


def get_context(runtime) -> Context:
    """``runtime.context`` as a :class:`Context` (defaults when none was given)."""
    ctx = getattr(runtime, "context", None) if runtime is not None else None
    if ctx is None:
        return Context()
    if isinstance(ctx, dict):
        return Context.from_dict(ctx)
    return ctx


def llm_roles(ctx: Context, rounds: int | None = None) -> list[str]:
    """The roles that ask the chat model (the Optimizer only when there is a round 2)."""
    roles = ["reasoner"] if ctx.reasoner == "llm" else []
    if ctx.optimizer == "llm" and (rounds if rounds is not None else ctx.max_rounds) > 1:
        roles.append("optimizer")
    return roles
