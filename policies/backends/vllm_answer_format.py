"""The answer-format constraint (:mod:`policies.constrained`) as a vLLM logits processor.

Why not vLLM's structured outputs (``StructuredOutputsParams(regex=...)``, xgrammar)?
They run on CPU, but vLLM masks the logits with them *before* it computes the
log-probs it returns, so under a constraint those log-probs are renormalised over the
allowed tokens and cannot be compared with a trainer's (measured: differences of up to
13 nats on the tiny model), and asking for ``prompt_logprobs`` of the completion
instead crashes the engine when a LoRA adapter is active (vLLM 0.32, a known issue).
A custom logits processor runs inside vLLM's sampler *after* it has taken the raw
log-probs, so the returned log-prob of each sampled token stays the model's own, while
sampling is constrained by the very code the ``local`` backend and the trainer's
``hf`` rollouts use (:class:`~policies.constrained.AnswerFormatProcessor`).

Use: start the engine with ``logits_processors=[ANSWER_FORMAT_PROCESSOR]``; a request
opts in with ``SamplingParams(extra_args={ANSWER_FORMAT_ARG: [T, signed]})``.

The class is built on first access (module ``__getattr__``) so that importing the two
names above does not import vLLM; vLLM's worker process resolves the class by name.
"""

from __future__ import annotations

ANSWER_FORMAT_PROCESSOR = "policies.backends.vllm_answer_format:AnswerFormatLogitsProcessor"
ANSWER_FORMAT_ARG = "dara_answer_format"


def _build_class():  # pragma: no cover - runs inside vLLM's worker process
    import torch
    from vllm.v1.sample.logits_processor import AdapterLogitsProcessor

    from policies.constrained import AnswerFormatProcessor, answer_pattern

    class AnswerFormatLogitsProcessor(AdapterLogitsProcessor):
        """Per request with ``extra_args[ANSWER_FORMAT_ARG] = [T, signed]``: only tokens
        that keep the completion a prefix of ``answer_pattern(T, signed)``."""

        def __init__(self, vllm_config, device, is_pin_memory):
            super().__init__(vllm_config, device, is_pin_memory)
            from transformers import AutoTokenizer

            self.tok = AutoTokenizer.from_pretrained(vllm_config.model_config.tokenizer, local_files_only=True)

        def is_argmax_invariant(self) -> bool:
            return False  # it masks tokens, so it changes which one is the most likely

        def new_req_logits_processor(self, params):
            fmt = (params.extra_args or {}).get(ANSWER_FORMAT_ARG)
            if fmt is None:
                return None
            proc = AnswerFormatProcessor(self.tok, [answer_pattern(int(fmt[0]), bool(fmt[1]))], prompt_len=0)

            def constrain(output_ids: list[int], logits: torch.Tensor) -> torch.Tensor:
                ids = torch.tensor([output_ids], dtype=torch.long)
                return proc(ids, logits.unsqueeze(0)).squeeze(0)

            return constrain

    return AnswerFormatLogitsProcessor


def __getattr__(name: str):
    if name == "AnswerFormatLogitsProcessor":
        cls = _build_class()
        globals()[name] = cls
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
