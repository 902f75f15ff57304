"""Typed training configs: one place for every knob, its help text and its validation.

Three layers, later wins: the dataclass defaults, a JSON/YAML file (``--config FILE``),
then command-line flags. Flags are generated from the fields (``ref_sync_every`` ->
``--ref-sync-every``), so a new field is a new flag with its help text for free.

- :class:`RolloutConfig` — which environments prompts come from and how Optimizer
  windows are chained (shared by SFT and GRPO).
- :class:`RewardConfig` — coefficients of the composite reward (``training.rewards``).
- :class:`LoraConfig` — the adapter's shape (rank, which layers).
- :class:`VLLMRolloutConfig` — the vLLM engine of GRPO rollouts (``rollout_engine vllm``).
- :class:`SFTConfig`, :class:`GRPOConfig` — the two trainers; each holds the three above.

Derived values are properties; ``validate()`` raises ``ValueError`` naming the field and
the bad value. A run's saved ``OUT/config.json`` (the resolved config plus its ``mode``)
is itself a valid config file (:func:`build_train_config`), so a run can be resumed or
repeated from it.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path

from policies.prompts import ROLES
from tools.config_flags import add_flags, build_config, check_nonnegative as _nonneg, check_positive as _pos
from tools.config_flags import described, from_dict, read_file, to_dict

__all__ = ["RolloutConfig", "RewardConfig", "LoraConfig", "VLLMRolloutConfig", "SFTConfig", "GRPOConfig", "ROLES",
           "add_flags", "build_config", "build_train_config", "from_dict", "read_file", "to_dict"]


_h = described


@dataclass
class RolloutConfig:
    """Where prompts come from (``training.rollouts``)."""

    families: list[str] = _h(["quadratic", "exponential", "hill"],
                             "Environment families prompts are drawn from (comma-separated), "
                             "sampled evenly.")
    periods: int = _h(6, "Slots T of synthetic environments.")
    budget: float = _h(6.0, "Budget B of synthetic environments.")
    history: int = _h(3, "Few-shot history records per task (the Reasoner's prompt).")
    noise: float = _h(0.0, "Feedback noise (coefficient of variation) on observed MROI.")
    window: int = _h(3, "Optimizer sliding window w (records shown).")
    max_rounds: int = _h(10, "Optimizer windows come from decisions at rounds 2..max_rounds.")
    chain_policy: str = _h("local-model", "Numeric policy that plays the earlier rounds when "
                           "chaining Optimizer windows (any policies.baselines name).")
    teacher_noise: float = _h(0.15, "Std of Gaussian noise (units of B/T) added to chained "
                              "allocations, so windows cover imperfect trajectories.")
    env_pool: int = _h(4096, "Environments generated per family (prompts sample from them).")
    env_seed: int = _h(1000, "Seed of the training environments (held-out evaluation uses others).")
    # The generalist distribution (training.distribution): any of these set = a fresh
    # environment per prompt instead of the fixed pool above.
    periods_range: list[int] = _h([], "[low, high]: slots T drawn per step (empty = fixed `periods`).")
    history_range: list[int] = _h([], "[low, high]: history rows drawn per step (empty = fixed `history`).")
    budget_range: list[float] = _h([], "[low, high]: budget drawn log-uniformly per prompt (empty = fixed `budget`).")
    noise_range: list[float] = _h([], "[low, high]: observation noise (CV) drawn per prompt, on history "
                                  "and feedback (empty = fixed `noise`).")
    bounds_share: float = _h(0.0, "Share of prompts whose task has per-slot lower/upper limits.")
    history_scale_range: list[float] = _h([], "[low, high]: in a share `history_scale_share` of prompts, "
                                          "each history row's total is B times a factor drawn "
                                          "log-uniformly from this range (real logs' past periods "
                                          "spend 0.02-2.4x the planned budget; empty = every row sums to B).")
    history_scale_share: float = _h(0.5, "Share of prompts whose history rows get rescaled totals "
                                    "(only with `history_scale_range`).")
    history_concentration_range: list[float] = _h([], "[low, high]: in a share `history_concentration_share` "
                                                  "of prompts (synthetic families), history rows' spend shares "
                                                  "are Dirichlet(a), a drawn log-uniformly from this range "
                                                  "(small a = concentrated like a real spend log; empty = rows "
                                                  "within 30% of uniform).")
    history_concentration_share: float = _h(0.5, "Share of prompts with Dirichlet history rows "
                                            "(only with `history_concentration_range`).")

    def validate(self) -> None:
        from tools.envs import FAMILIES

        if not self.families:
            raise ValueError("families must name at least one environment family")
        for f in self.families:
            if f not in FAMILIES:
                raise ValueError(f"families: unknown family {f!r}; choose from {', '.join(FAMILIES)}")
        _pos("periods", self.periods)
        _pos("budget", self.budget)
        _nonneg("history", self.history)
        _nonneg("noise", self.noise)
        _pos("window", self.window)
        if self.max_rounds < 2:
            raise ValueError(f"max_rounds must be >= 2 (the Optimizer acts from round 2), got {self.max_rounds}")
        _nonneg("teacher_noise", self.teacher_noise)
        _pos("env_pool", self.env_pool)
        from training.distribution import validate_ranges

        validate_ranges(self)


@dataclass
class RewardConfig:
    """Composite reward coefficients (``training.rewards``).

    Amounts in allocation space are in units of B/T, so the reference values (B = T = 6,
    unit 1) apply unchanged to any size.
    """

    env_alpha: float = _h(5.0, "Weight alpha of the environment term -alpha*sum|r_t - mean r| "
                          "(r normalised by the largest MROI in the prompt's window). The reference "
                          "description does not give alpha; 5 makes allocation quality, not the "
                          "bonus, dominate the within-group reward differences.")
    too_many_penalty: float = _h(1.5, "Penalty for more numbers than slots.")
    too_few_penalty: float = _h(3.0, "Penalty for one number too few.")
    too_few_step: float = _h(1.0, "Extra penalty per further missing number ...")
    too_few_max: float = _h(5.0, "... capped at this (also used when nothing parses).")
    budget_coef_reasoner: float = _h(2.0, "Reasoner budget penalty per unit of |sum b - B| (B/T units).")
    budget_coef_optimizer: float = _h(1.0, "Optimizer budget penalty per unit of |sum b - B| (B/T units).")
    equal_penalty: float = _h(1.0, "Penalty for an all-equal allocation.")
    bonus_weight: float = _h(1.0, "Multiplier of the reference bonus shaping term (0 = off).")
    bonus_top_k: int = _h(2, "Slots at each end of the historical MROI ranking the bonus looks at.")
    bonus_min_change: float = _h(0.1, "Change (B/T units) beyond which a move earns the bonus.")
    bonus_small_change: float = _h(0.3, "Moves up to this earn 1 + |change|; larger ones earn bonus_large.")
    bonus_large: float = _h(0.5, "Bonus for a move larger than bonus_small_change.")
    format_weight: float = _h(1.0, "Weight of the graded format term (max 1 before weighting).")
    regret_weight: float = _h(0.0, "Weight of the regret term: the answer's value gain over the current "
                              "plan relative to that plan's gap to the optimum, (V(b) - V(b_cur)) / "
                              "max(V* - V(b_cur), regret_eps * V*), clipped to [-1, 1] (0 = off). The "
                              "simulator knows V* at training time; this is the term that tracks regret.")
    slip_penalty: float = _h(0.0, "For hint prompts (delta-hint, delta-hint-last): an answer that copies the hint one slot out of "
                             "step (policies.observations.misaligned_copy) is scored as holding the current "
                             "plan (env of the current plan, no bonus, no regret gain) minus this; 0 = off, "
                             "slips scored as the plan they describe (every shipped adapter). A slip moves "
                             "each slot by its neighbour's amount, which the env term can still reward.")
    regret_eps: float = _h(0.01, "Floor of the regret term's denominator, as a share of V*: a plan "
                           "already within 1% of the optimum is not rewarded for noise-sized moves.")

    def validate(self) -> None:
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if not math.isfinite(v):
                raise ValueError(f"{f.name} must be finite, got {v!r}")
            if f.name != "bonus_top_k" and v < 0:
                raise ValueError(f"{f.name} must be >= 0 (penalties are subtracted), got {v!r}")
        if self.bonus_top_k < 0:
            raise ValueError(f"bonus_top_k must be >= 0, got {self.bonus_top_k}")


@dataclass
class LoraConfig:
    """The LoRA adapter (PEFT)."""

    r: int = _h(16, "LoRA rank.")
    alpha: int = _h(32, "LoRA alpha (scale = alpha / r).")
    dropout: float = _h(0.0, "LoRA dropout (GRPO always runs with dropout off).")
    top_layers: int = _h(10, "Put LoRA on the top N transformer layers only (0 = all); "
                         "backward then stops early (~1.8x faster SFT steps, docs/training.md).")
    target_modules: list[str] = _h(["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
                                   "Linear modules that get LoRA.")

    def validate(self) -> None:
        _pos("r", self.r)
        _pos("alpha", self.alpha)
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        _nonneg("top_layers", self.top_layers)
        if not self.target_modules:
            raise ValueError("target_modules must not be empty")


ROLLOUT_ENGINES = ("hf", "vllm")
VLLM_DTYPES = ("float32", "bfloat16")


@dataclass
class VLLMRolloutConfig:
    """The vLLM engine of GRPO rollouts (``training.vllm_rollouts``; ``rollout_engine vllm``)."""

    dtype: str = _h("float32", "vLLM weight dtype: float32 (the trainer's weights exactly) or bfloat16.")
    max_model_len: int = _h(2048, "Longest prompt + completion (tokens) the engine accepts.")
    kv_cache_gib: int = _h(1, "CPU KV cache of the engine (GiB).")
    lp_tol: float = _h(0.1, "Tolerance (nats) of train/vllm_lp_mismatch: the share of completion "
                       "tokens whose vLLM and trainer log-probs differ by more than this.")

    def validate(self) -> None:
        if self.dtype not in VLLM_DTYPES:
            raise ValueError(f"vllm.dtype must be one of {', '.join(VLLM_DTYPES)}, got {self.dtype!r}")
        _pos("vllm.max_model_len", self.max_model_len)
        _pos("vllm.kv_cache_gib", self.kv_cache_gib)
        _pos("vllm.lp_tol", self.lp_tol)


@dataclass
class _Common:
    role: str = _h("reasoner", "Which adapter to train: reasoner or optimizer.")
    encoding: str | None = _h(None, "Prompt encoding (absolute|delta|delta-slope|delta-hint|delta-hint-last); default: the role's default.")
    base: str = _h("embedded", "Base model: 'embedded', 'tiny-random' or an HF model directory.")
    out: str = _h("runs/train", "Output directory (log.jsonl, adapter/, checkpoint/).")
    steps: int = _h(300, "Optimisation steps (numbered from 1).")
    seed: int = _h(0, "Seed of prompts, sampling and LoRA initialisation.")
    lr: float = _h(2e-4, "Peak learning rate (AdamW).")
    weight_decay: float = _h(0.0, "AdamW weight decay.")
    warmup_steps: int = _h(10, "Linear warm-up steps.")
    schedule: str = _h("cosine", "LR schedule after warm-up: cosine, linear or constant.")
    min_lr_ratio: float = _h(0.1, "Final LR as a fraction of the peak (cosine/linear).")
    grad_clip: float = _h(1.0, "Gradient-norm clip (0 = off).")
    device: str = _h("auto", "Training device: 'auto' (cuda:<LOCAL_RANK> when CUDA is available, else "
                     "cpu), 'cpu', 'cuda' (= cuda:<LOCAL_RANK>) or 'cuda:N' (one process only).")
    bf16: bool = _h(True, "bfloat16 autocast (on the training device) for forward/backward and generation.")
    threads: int = _h(0, "torch CPU threads (0 = leave torch's default).")
    save_every: int = _h(25, "Write a resumable checkpoint every N steps (and at the end).")
    log_every: int = _h(1, "Print progress every N steps (the JSONL log gets every step).")
    init_adapter: str | None = _h(None, "Start from this PEFT LoRA directory instead of a fresh LoRA.")
    resume: bool = _h(False, "Resume from OUT/checkpoint if it exists.")
    rollout: RolloutConfig = field(default_factory=RolloutConfig, metadata={"description": "prompt source"})
    lora: LoraConfig = field(default_factory=LoraConfig, metadata={"description": "adapter shape"})

    def validate(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}, got {self.role!r}")
        from policies.prompts import resolve_encoding

        resolve_encoding(self.role, self.encoding)  # the prompts module's own check of the name
        _pos("steps", self.steps)
        _nonneg("seed", self.seed)
        _pos("lr", self.lr)
        _nonneg("weight_decay", self.weight_decay)
        _nonneg("warmup_steps", self.warmup_steps)
        if self.schedule not in ("cosine", "linear", "constant"):
            raise ValueError(f"schedule must be cosine, linear or constant, got {self.schedule!r}")
        if not 0 <= self.min_lr_ratio <= 1:
            raise ValueError(f"min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")
        _nonneg("grad_clip", self.grad_clip)
        _nonneg("threads", self.threads)
        from training.distributed import resolve_device

        resolve_device(self.device)  # its own one-line error: bad value, no CUDA, no such GPU
        _pos("save_every", self.save_every)
        _pos("log_every", self.log_every)
        if self.init_adapter is not None and not (Path(self.init_adapter) / "adapter_config.json").is_file():
            raise ValueError(f"init_adapter: {self.init_adapter!r} has no adapter_config.json")
        self.rollout.validate()
        self.lora.validate()

    @property
    def resolved_encoding(self) -> str:
        from policies.prompts import resolve_encoding

        return resolve_encoding(self.role, self.encoding)

    @property
    def out_dir(self) -> Path:
        return Path(self.out)

    def lr_at(self, step: int) -> float:
        """Learning rate used at ``step`` (1-based): warm-up, then the schedule."""
        if self.warmup_steps and step <= self.warmup_steps:
            return self.lr * step / self.warmup_steps
        if self.schedule == "constant":
            return self.lr
        span = max(1, self.steps - self.warmup_steps)
        p = min(1.0, max(0.0, (step - self.warmup_steps) / span))
        shape = 0.5 * (1 + math.cos(math.pi * p)) if self.schedule == "cosine" else 1 - p
        return self.lr * (self.min_lr_ratio + (1 - self.min_lr_ratio) * shape)


@dataclass
class SFTConfig(_Common):
    """Supervised warm start: prompts + the teacher's ideal completion, completion-only loss."""

    batch_size: int = _h(8, "Prompts per step (fresh prompts every step).")
    teacher: str = _h("local-model", "Numeric teacher (policies.baselines name); it sees only the prompt's window.")
    lora: LoraConfig = field(default_factory=lambda: LoraConfig(dropout=0.05), metadata={"description": "adapter shape"})

    def validate(self) -> None:
        super().validate()
        _pos("batch_size", self.batch_size)
        from policies.baselines import BASELINES

        if self.teacher not in BASELINES:
            raise ValueError(f"teacher must be one of {BASELINES}, got {self.teacher!r}")


@dataclass
class GRPOConfig(_Common):
    """GRPO-Adaptive (``training.grpo``). Defaults are CPU-sized; the reference run
    (Qwen2.5-3B, 8xA100) used beta 0.04, eps 0.1, lr 5e-6, G 12, 8 prompts, M 50."""

    lr: float = _h(5e-5, "Peak learning rate (AdamW) of the LoRA policy.")
    warmup_steps: int = _h(0, "Linear warm-up steps.")
    schedule: str = _h("constant", "LR schedule: cosine, linear or constant.")
    prompts_per_step: int = _h(4, "Distinct prompts per step.")
    group_size: int = _h(8, "Completions G sampled per prompt.")
    beta: float = _h(0.04, "Weight of the k3 KL to the reference adapter.")
    eps: float = _h(0.1, "Clip range of the importance ratio (lower side).")
    eps_high: float | None = _h(None, "Upper clip range (default: eps).")
    mu: int = _h(1, "Optimisation passes per batch (1: sampling log-probs are the old policy).")
    ref_sync_every: int = _h(10, "Refresh the reference adapter from the policy every M steps "
                             "(0 or 'never' = plain GRPO with a fixed reference).",
                             words={"never": 0, "none": 0, "off": 0})
    ref_sync_alpha: float = _h(1.0, "Refresh mixing: ref <- alpha*policy + (1-alpha)*ref (1 = hard copy).")
    temperature: float = _h(1.0, "Sampling temperature.")
    top_p: float = _h(1.0, "Nucleus sampling mass.")
    max_new_tokens: int | None = _h(None, "Completion cap in tokens (default: follows T, the largest "
                                    "policies.prompts.answer_token_cap of the step's prompts).")
    constrained: bool = _h(True, "Sample with the answer format enforced (policies.constrained), as the "
                           "local backend decodes at inference; the model still picks every digit. "
                           "The loss scores the model's own, unconstrained log-probs; format_mass_weight "
                           "keeps the free-running format from decaying (docs/training.md, 'Constrained "
                           "sampling'); false samples freely and lets the reward teach the format.")
    format_mass_weight: float = _h(1.0, "With constrained sampling: weight of -mean log(policy mass on the "
                                   "tokens the answer format allows) in the loss (training.format_mass), so "
                                   "the format stays the policy's own and not only the mask's (0 = off; the "
                                   "mass is logged as train/format_mass either way).")
    extra_prompts: int = _h(0, "Dynamic sampling: draw this many more prompts per step and train on the "
                            "prompts_per_step groups whose rewards differ (zero-std groups carry no "
                            "policy-gradient signal); 0 = off. One process, hf rollouts.")
    share_prompts: bool = _h(True, "Log-prob passes run each distinct prompt once and repeat its KV cache "
                             "for the group's G completions (training.shared_prompts; same values, "
                             "less compute); off: every row runs prompt + completion.")
    loss_agg: str = _h("token", "Loss aggregation: 'token' (mean over all completion tokens) or "
                       "'sequence' (mean per completion, then over completions).")
    adv_eps: float = _h(1e-4, "eps in (R - mean) / (std + eps).")
    grad_clip: float = _h(0.1, "Gradient-norm clip (0 = off).")
    save_every: int = _h(10, "Write a resumable checkpoint every N steps (and at the end).")
    rollout_engine: str = _h("hf", "What samples the completions: hf (the trainer's own generate) or "
                             "vllm (a vLLM engine given the current policy adapter every step; the "
                             "loss still uses log-probs the trainer recomputes).")
    vllm: VLLMRolloutConfig = field(default_factory=VLLMRolloutConfig,
                                    metadata={"description": "vLLM rollouts (rollout_engine vllm)"})
    reward: RewardConfig = field(default_factory=RewardConfig, metadata={"description": "reward coefficients"})

    def validate(self) -> None:
        super().validate()
        _pos("prompts_per_step", self.prompts_per_step)
        if self.group_size < 2:
            raise ValueError(f"group_size must be >= 2 (advantages are relative to the group), got {self.group_size}")
        _nonneg("beta", self.beta)
        _nonneg("format_mass_weight", self.format_mass_weight)
        _pos("eps", self.eps)
        if self.eps_high is not None:
            _pos("eps_high", self.eps_high)
        _pos("mu", self.mu)
        _nonneg("extra_prompts", self.extra_prompts)
        if self.extra_prompts and self.rollout_engine != "hf":
            raise ValueError(f"extra_prompts ({self.extra_prompts}) needs rollout_engine hf, "
                             f"got {self.rollout_engine!r}")
        _nonneg("ref_sync_every", self.ref_sync_every)
        if not 0 < self.ref_sync_alpha <= 1:
            raise ValueError(f"ref_sync_alpha must be in (0, 1], got {self.ref_sync_alpha}")
        _pos("temperature", self.temperature)
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.max_new_tokens is not None:
            _pos("max_new_tokens", self.max_new_tokens)
        if self.loss_agg not in ("token", "sequence"):
            raise ValueError(f"loss_agg must be 'token' or 'sequence', got {self.loss_agg!r}")
        _pos("adv_eps", self.adv_eps)
        if self.rollout_engine not in ROLLOUT_ENGINES:
            raise ValueError(f"rollout_engine must be one of {', '.join(ROLLOUT_ENGINES)}, got {self.rollout_engine!r}")
        self.vllm.validate()
        self.reward.validate()

    @property
    def clip_high(self) -> float:
        return self.eps if self.eps_high is None else self.eps_high

    def completion_cap(self, periods: list[int]) -> int:
        """Max new tokens when sampling answers with ``periods`` slots: ``max_new_tokens``
        if set, else the largest ``policies.prompts.answer_token_cap`` among them."""
        if self.max_new_tokens is not None:
            return self.max_new_tokens
        from policies.prompts import answer_token_cap

        return max(answer_token_cap(T, self.resolved_encoding) for T in periods)

    @property
    def batch_completions(self) -> int:
        return self.prompts_per_step * self.group_size

    def refresh_due(self, step: int) -> bool:
        """True when the reference is refreshed at the end of ``step``."""
        return self.ref_sync_every > 0 and step % self.ref_sync_every == 0


def build_train_config(mode: str, file: str | None = None, flags: dict | None = None):
    """The :class:`SFTConfig` (``mode="sft"``) or :class:`GRPOConfig` (``"grpo"``) from
    defaults < ``file`` < ``flags`` (dotted keys, as from :func:`add_flags`), validated.

    ``file`` may be a run's saved ``config.json``: its ``mode`` key must match ``mode``
    and is dropped (it names the trainer, it is not a field).
    """
    classes = {"sft": SFTConfig, "grpo": GRPOConfig}
    if mode not in classes:
        raise ValueError(f"mode must be one of {', '.join(classes)}, got {mode!r}")
    data = read_file(file) if file else {}
    saved = data.pop("mode", mode)
    if saved != mode:
        raise ValueError(f"mode: {file} holds a {saved!r} config, not {mode!r}")
    # the file's values take the place of defaults; given flags still override them
    return build_config(classes[mode], flags=data, **(flags or {}))
