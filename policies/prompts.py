"""Prompts: the ONLY place DARA writes text for a model and reads text back.

Training (SFT, GRPO) and inference use exactly these functions, so the text a model is
trained on is the text it sees.

Scale-free view
---------------
One adapter must serve any budget ``B`` and any number of slots ``T``, so prompts never
show task units:

- spend is shown in multiples of ``task.unit = B/T`` (1.00 = the even share; a feasible
  plan sums to ``T``);
- marginal ROI is divided by the largest ``|mroi|`` observed in the records shown (the
  window), so the best slot seen reads 1.00. (Chosen over the window mean: it keeps every
  number in [0, 1] for non-negative feedback, which is compact — 4 tokens — and does not
  blow up when the mean is near zero.) If every MROI shown is 0 the scale is 1;
- bounds (``task.lower`` / ``task.upper``) are shown, in the same units, only when the
  task has them (``-`` marks a slot without an upper bound);
- the model answers in the same units and :func:`decode` maps back to task units.

Numbers have 2 decimals. Slot labels are not shown (tokens cost time on CPU, and the
adapters are trained on anonymous slots).

Encodings (named, per role; :data:`DEFAULT_ENCODING`)
-----------------------------------------------------
- ``absolute`` — the answer is the new allocation: ``<answer>[b1,...,bT]</answer>``
  (numbers are written without spaces after commas — one token fewer each with the
  SmolLM2 tokenizer; the decoder accepts any spacing).
- ``delta`` — the prompt adds, for the latest record, each slot's MROI gap to the mean
  (``gap=[...]``, same normalised scale); the answer is the signed change per slot,
  ``<answer>[d1,...,dT]</answer>``, which the decoder adds to the current allocation
  (the last record shown). With ``absolute`` a small Optimizer learned to copy the
  current plan; with ``delta`` it kept improving every round (docs/training.md).
- ``delta-slope`` — ``delta`` plus a tool-computed observation: ``fall=[...]``, each
  slot's fitted fall of m per unit of b over the window (``-slope``, the same
  least-squares estimate the ``local-model`` baseline uses, same normalised scales), so
  the size of a useful move can be read off ``gap/fall`` instead of being inferred from
  three noisy plans (docs/results.md §3 records whether it helped).
- ``delta-hint`` — ``delta`` plus the change a numeric tool suggests: ``hint=[...]``, the
  ``local-model`` baseline's plan for this window (slopes fitted per slot, MROI
  equalised on them, bounds kept) minus the current plan, in units of B/T. The model
  decides how far to follow it: a small model copies numbers reliably but infers
  slopes from three noisy rows poorly (docs/training.md, "Tool observations").
- ``delta-hint-last`` — ``delta-hint`` with ``hint=`` written last, below the current row:
  above a one-channel row (``[0.00,0.00,0.00,5.00,0.00]``) a Reasoner copying the hint
  drifted into copying the row (docs/results.md §10).

The answer may be preceded by an optional short ``<reason>...</reason>``.

Decoding never raises on model text. Failures are typed (:class:`ParseError`) and put in
``Decision.error`` as ``"<code>: <detail>"``, e.g. ``"wrong_length: expected 6 numbers,
got 5"``. Tiny negatives caused by 2-decimal rounding (down to ``-NEG_TOL`` units) are
clipped to 0; larger negatives are the ``negative`` error for ``absolute``. For ``delta``
a cut larger than the slot's current spend is clipped to 0 (``meta["clipped_to_zero"]``
lists the slots): the answer is well formed and means "stop this slot". Changes whose plan
spends more than ``CHANGE_SUM_TOL`` of the budget too much or too little are the
``not_a_change`` error: such an answer is an allocation written where a change belongs,
and rescaling it would quietly return the current plan. Feasibility (sum = B, bounds)
is NOT enforced here: that is the budget tool's job (``tools.budget``).
"""

from __future__ import annotations

import math
import operator
import re
from dataclasses import dataclass
from enum import Enum
from typing import Literal, Sequence, cast, get_args

from policies.base import Decision, DecisionRequest
from policies.observations import mroi_scale, window_fall, window_hint
from tools.task import Record, Task

Encoding = Literal["absolute", "delta", "delta-slope", "delta-hint", "delta-hint-last"]
"""The prompt encodings (type of an encoding name); :data:`ENCODINGS` lists them."""
ENCODINGS: tuple[str, ...] = get_args(Encoding)
DELTA_ENCODINGS: tuple[str, ...] = ("delta", "delta-slope", "delta-hint", "delta-hint-last")
"""Encodings whose answer is a signed change applied to the current plan."""
HINT_ENCODINGS: tuple[str, ...] = ("delta-hint", "delta-hint-last")  # prompts with a hint= line
DEFAULT_ENCODING: dict[str, Encoding] = {"reasoner": "absolute", "optimizer": "delta"}
ROLES: tuple[str, ...] = ("reasoner", "optimizer")
DEFAULT_WINDOW = 3
"""Sliding window w of the Optimizer (the reference code's)."""
NEG_TOL = 0.01
"""Negatives down to -NEG_TOL (in units of B/T) are rounding noise and clipped to 0."""

CHANGE_SUM_TOL = 0.5
"""A signed answer whose plan (current plan plus the changes, cuts clipped at 0) spends more
than this share of the budget too much or too little is not a change: it is the
``not_a_change`` error. The Reasoner once wrote the current one-channel row as the change;
the budget tool scaled the doubled plan back to the current one, and the old allocation was
reported as a plan (docs/results.md §10). Copy slips (one move without its counter-move)
stay far below it."""


class ParseError(str, Enum):
    """Typed decoder failures; the value is the code used in ``Decision.error``."""

    MISSING_TAGS = "missing_tags"
    WRONG_LENGTH = "wrong_length"
    NON_NUMERIC = "non_numeric"
    NON_FINITE = "non_finite"
    NEGATIVE = "negative"
    NOT_A_CHANGE = "not_a_change"


PARSE_ERRORS: tuple[str, ...] = tuple(e.value for e in ParseError)


def error_code(error: str | None) -> str | None:
    """The :class:`ParseError` code of a ``Decision.error`` string (``None`` if none)."""
    if not error:
        return None
    return error.split(":", 1)[0].strip()


def resolve_encoding(role: str, encoding: str | None = None) -> Encoding:
    """Validate ``role``/``encoding``; ``None`` means the role's default."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}, got {role!r}")
    enc = DEFAULT_ENCODING[role] if encoding is None else encoding
    if enc not in ENCODINGS:
        raise ValueError(f"encoding must be one of {ENCODINGS}, got {encoding!r}")
    return cast(Encoding, enc)


# ---------------------------------------------------------------------------------------
# number formatting
# ---------------------------------------------------------------------------------------
def _f(x: float) -> str:
    s = f"{x:.2f}"
    return "0.00" if s == "-0.00" else s


def _vec(xs: Sequence[float]) -> str:
    # no space after the comma: SmolLM2's tokenizer spends a token on it (-1 per number)
    return "[" + ",".join(_f(x) for x in xs) + "]"


def _bound_vec(xs: Sequence[float]) -> str:
    return "[" + ",".join("-" if not math.isfinite(x) else _f(x) for x in xs) + "]"


def _current_units(request: DecisionRequest) -> list[float]:
    """Current plan in units of B/T (uniform when the window is empty)."""
    task = request.task
    if not request.window:
        return [1.0] * task.periods
    return [b / task.unit for b in request.current]


# ---------------------------------------------------------------------------------------
# encoders
# ---------------------------------------------------------------------------------------
_SYSTEM_BASE = (
    "Split an ad budget over T slots. Marginal ROI m falls as a slot's spend b grows; "
    "best is equal m in all funded slots. b is in units of budget/T and sums to T; "
    "m is scaled to max 1."
)
_SYSTEM_ANSWER = {
    "absolute": " Reply <answer>[b1,...,bT]</answer> with the new b.",
    "delta": (
        " gap is m minus its mean for the current b. Reply <answer>[d1,...,dT]</answer> "
        "with the change to the current b (sum 0): move spend to high-m slots."
    ),
    "delta-slope": (
        " gap is m minus its mean for the current b; fall is how much m drops per unit of "
        "b added. Reply <answer>[d1,...,dT]</answer> with the change to the current b "
        "(sum 0): move spend to high-m slots."
    ),
    "delta-hint": (
        " gap is m minus its mean for the current b; hint is the change a fitted model of m "
        "suggests. Reply <answer>[d1,...,dT]</answer> with the change to the current b "
        "(sum 0): move spend to high-m slots."
    ),
}
_SYSTEM_ANSWER["delta-hint-last"] = _SYSTEM_ANSWER["delta-hint"]
_SYSTEM_REASON = " An optional short <reason>...</reason> may come first."


def system_prompt(encoding: str) -> str:
    """The system message: the task in three sentences plus the answer format."""
    return _SYSTEM_BASE + _SYSTEM_ANSWER[encoding] + _SYSTEM_REASON


def _user_prompt(request: DecisionRequest, encoding: str) -> str:
    task, window, role = request.task, request.window, request.role
    u = task.unit
    scale = mroi_scale(window)
    lines = [f"T={task.periods}."]
    if task.lower is not None:
        lines.append("lo=" + _bound_vec([x / u for x in task.lower]))
    if task.upper is not None:
        lines.append("hi=" + _bound_vec([x / u for x in task.upper]))
    lines.append("History:" if role == "reasoner" else "Plans, oldest first:")
    for k, rec in enumerate(window):
        row = f"b={_vec([b / u for b in rec.allocation])} m={_vec([m / scale for m in rec.mroi])}"
        if role == "optimizer" and k == len(window) - 1:
            row += " (current)"
        lines.append(row)
    if not window:
        lines.append("(none)")
    if encoding in DELTA_ENCODINGS:
        if window:
            m = [v / scale for v in window[-1].mroi]
            mean = sum(m) / len(m)
            lines.append(f"gap={_vec([v - mean for v in m])}")
            if encoding == "delta-slope":
                lines.append(f"fall={_vec(window_fall(window, u, scale))}")
            below_gap = len(lines)
            cur = _current_units(request)
            if any(abs(c * u - b) > 1e-9 * max(1.0, task.budget) for c, b in zip(cur, window[-1].allocation)):
                # the last record spent more or less than B: say where the change starts
                lines.append(f"Current b at this budget: {_vec(cur)}")
            if encoding in HINT_ENCODINGS:  # delta-hint: below gap; delta-hint-last: last, below the current row
                hint = window_hint(window, task, request.current)
                lines.insert(len(lines) if encoding == "delta-hint-last" else below_gap, f"hint={_vec(hint)}")
        else:
            lines.append("Current b: 1.00 in every slot.")
        lines.append("Give the change d.")
    else:
        lines.append("Give the new b.")
    return "\n".join(lines)


def encode(request: DecisionRequest, encoding: str | None = None) -> list[dict[str, str]]:
    """Chat messages ``[{"role": "system", ...}, {"role": "user", ...}]`` for a request.

    ``request.role`` picks the wording (Reasoner: few-shot history; Optimizer: sliding
    window with the current plan marked); ``encoding`` ``None`` = the role's default.
    """
    enc = resolve_encoding(request.role, encoding)
    return [
        {"role": "system", "content": system_prompt(enc)},
        {"role": "user", "content": _user_prompt(request, enc)},
    ]


def encode_reasoner(task: Task, history: Sequence[Record] | None = None,
                    encoding: str | None = None) -> list[dict[str, str]]:
    """Reasoner messages: task + few-shot history (default: ``task.history``)."""
    hist = list(task.history if history is None else history)
    return encode(DecisionRequest("reasoner", task, hist), encoding)


def encode_optimizer(task: Task, window: Sequence[Record] | None = None,
                     encoding: str | None = None, w: int = DEFAULT_WINDOW) -> list[dict[str, str]]:
    """Optimizer messages: task + the last ``w`` records (default: of ``task.history``)."""
    recs = list(task.history if window is None else window)[-w:]
    return encode(DecisionRequest("optimizer", task, recs), encoding)


def make_request(role: str, task: Task, window: Sequence[Record] | None = None,
                 w: int = DEFAULT_WINDOW) -> DecisionRequest:
    """Build a request: Reasoner sees the whole window/history, Optimizer the last ``w``."""
    resolve_encoding(role)
    recs = list(task.history if window is None else window)
    if role == "optimizer":
        recs = recs[-w:]
    return DecisionRequest(role, task, recs)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------
# answer length
# ---------------------------------------------------------------------------------------
MIN_ANSWER_TOKENS = 64
"""The floor of :func:`answer_token_cap`: the fixed cap every backend used before the cap
followed T, so short answers keep room for an optional ``<reason>``."""
_ANSWER_TAG_TOKENS = 8 + 16
"""``<answer>[``, ``]</answer>`` (8 tokens with the embedded tokenizer) plus 16 of slack."""
_TOKENS_PER_NUMBER = {"absolute": 7, "delta": 8, "delta-slope": 8, "delta-hint": 8, "delta-hint-last": 8}
"""Per number, comma included: 6 measured for the widest numbers the answer format
allows (``99.99``, ``-99.99``) with the embedded tokenizer, plus one of margin, plus one
more for the sign of signed answers (tokenizers that do not merge ``,-``)."""


def answer_token_cap(periods: int, encoding: str) -> int:
    """A generous cap on new tokens for an answer with ``periods`` numbers.

    A fixed cap truncated long answers (64 tokens cut ``absolute`` answers at T >= 13
    and signed ones near T = 11-12), so callers ask for this per request. The cap is
    never below :data:`MIN_ANSWER_TOKENS`.

    >>> answer_token_cap(6, "delta"), answer_token_cap(24, "absolute")
    (72, 192)
    """
    try:
        T = operator.index(periods)
    except TypeError:
        T = 0
    if T < 1 or isinstance(periods, bool):
        raise ValueError(f"periods must be an integer >= 1, got {periods!r}")
    if encoding not in ENCODINGS:
        raise ValueError(f"encoding must be one of {ENCODINGS}, got {encoding!r}")
    return max(MIN_ANSWER_TOKENS, _ANSWER_TAG_TOKENS + _TOKENS_PER_NUMBER[encoding] * T)


# ---------------------------------------------------------------------------------------
# target text (SFT) and decoder
# ---------------------------------------------------------------------------------------
def format_target(request: DecisionRequest, allocation: Sequence[float],
                  encoding: str | None = None, reason: str | None = None) -> str:
    """The ideal completion for a target ``allocation`` (task units).

    ``decode(format_target(r, a), r)`` returns ``a`` to within 2-decimal rounding
    (0.005 units of B/T per slot, plus the clip of rounding negatives to 0).
    """
    enc = resolve_encoding(request.role, encoding)
    u = request.task.unit
    x = [a / u for a in allocation]
    if enc in DELTA_ENCODINGS:
        cur = _current_units(request)
        x = [xi - ci for xi, ci in zip(x, cur)]
    head = f"<reason>{reason}</reason>" if reason else ""
    return f"{head}<answer>{_vec(x)}</answer>"


_PLAIN_NUM = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)")
_NUM = re.compile(_PLAIN_NUM.pattern + r"(?:[eE][+-]?\d+)?")
_NONFINITE = re.compile(r"[+-]?(?:nan|inf|infinity)", re.IGNORECASE)
_ANSWER_OPEN = re.compile(r"<\s*answer\s*>", re.IGNORECASE)
_ANSWER_CLOSE = re.compile(r"<\s*/\s*answer\s*>", re.IGNORECASE)
_REASON = re.compile(r"<\s*reason\s*>(.*?)<\s*/\s*reason\s*>", re.IGNORECASE | re.DOTALL)


def _fail(text: str, code: ParseError, detail: str, enc: str, **meta) -> Decision:
    return Decision(None, text=text, error=f"{code.value}: {detail}",
                    meta={"error_code": code.value, "encoding": enc, **meta})


def _answer_body(text: str) -> tuple[str | None, str]:
    """The list body inside ``<answer>``; ``(None, why)`` when it cannot be found.

    Accepts a missing ``</answer>`` when the bracketed list is complete (backends that
    stop *at* ``</answer>`` may drop it), and a list without brackets when closed by
    ``</answer>``.
    """
    m = _ANSWER_OPEN.search(text)
    if m is None:
        return None, "no <answer> tag"
    rest = text[m.end():]
    c = _ANSWER_CLOSE.search(rest)
    inner = rest[: c.start()] if c else rest
    s = inner.strip()
    if s.startswith("["):
        end = s.find("]")
        if end < 0:
            return None, "answer list has no closing ']'"
        return s[1:end], ""
    if c is None:
        return None, "no </answer> tag"
    return s, ""


@dataclass(frozen=True)
class AnswerShape:
    """How much of the answer format a text has, whether or not it decodes.

    The GRPO reward gives graded credit for it (``training.rewards``), so a completion
    that is nearly right scores above garbage. ``n_numbers`` counts plain numbers
    (``1``, ``-0.5``, ``.5``) in the answer region: inside the first ``<answer>`` (the
    whole text when there is none), up to the first ``</answer>``, and inside the first
    ``[...]`` when there is one.
    """

    has_open: bool
    has_close: bool
    has_brackets: bool
    n_numbers: int


def answer_shape(text: str) -> AnswerShape:
    """The :class:`AnswerShape` of model text (never raises; non-strings as ``str(text)``)."""
    if not isinstance(text, str):
        text = "" if text is None else str(text)
    m = _ANSWER_OPEN.search(text)
    body = text[m.end():] if m else text
    c = _ANSWER_CLOSE.search(body)
    if c:
        body = body[: c.start()]
    lb, rb = body.find("["), body.find("]")
    has_brackets = lb >= 0 and rb > lb
    if has_brackets:
        body = body[lb + 1: rb]
    return AnswerShape(m is not None, c is not None, has_brackets, len(_PLAIN_NUM.findall(body)))


def decode(text: str, request: DecisionRequest, encoding: str | None = None) -> Decision:
    """Parse model text into a :class:`Decision` with an allocation in task units.

    Never raises on model text (any ``str``; non-strings are treated as ``str(text)``).
    On failure ``allocation`` is ``None`` and ``error`` is ``"<code>: <detail>"`` with a
    :class:`ParseError` code; ``meta["error_code"]`` holds the code alone. On success
    ``meta`` holds the answer in prompt units (``"answer_units"``) and the reason text.
    """
    enc = resolve_encoding(request.role, encoding)
    if not isinstance(text, str):
        text = "" if text is None else str(text)
    T = request.task.periods
    u = request.task.unit
    reason_m = _REASON.search(text)
    reason = reason_m.group(1).strip() if reason_m else None

    body, why = _answer_body(text)
    if body is None:
        return _fail(text, ParseError.MISSING_TAGS, why, enc)
    parts = [p.strip() for p in re.split(r"[,;]", body)] if body.strip() else []
    if len(parts) != T:
        return _fail(text, ParseError.WRONG_LENGTH, f"expected {T} numbers, got {len(parts)}", enc)
    vals: list[float] = []
    for i, p in enumerate(parts):
        if _NONFINITE.fullmatch(p):
            return _fail(text, ParseError.NON_FINITE, f"slot {i + 1} is {p!r}", enc)
        if not _NUM.fullmatch(p):
            return _fail(text, ParseError.NON_NUMERIC, f"slot {i + 1} is {p[:20]!r}", enc)
        v = float(p)
        if not math.isfinite(v):
            return _fail(text, ParseError.NON_FINITE, f"slot {i + 1} is {p[:20]!r}", enc)
        vals.append(v)

    if enc in DELTA_ENCODINGS:
        cur = _current_units(request)
        units = [c + d for c, d in zip(cur, vals)]
        spent = sum(max(x, 0.0) for x in units)  # what the plan it describes spends (cuts clipped)
        if abs(spent - T) > CHANGE_SUM_TOL * T:
            return _fail(text, ParseError.NOT_A_CHANGE,
                         f"the changes add up to {_f(sum(vals))} units of B/T, so the plan would spend "
                         f"{_f(spent)} units where the budget is {T}: this reads as an allocation "
                         "written as a change", enc, plan_units=[max(x, 0.0) for x in units])
    else:
        units = vals
    alloc: list[float] = []
    overshoot: list[int] = []
    for i, x in enumerate(units):
        if x < -NEG_TOL:
            if enc not in DELTA_ENCODINGS:
                return _fail(text, ParseError.NEGATIVE, f"slot {i + 1} is {_f(x)} units of B/T", enc)
            # A cut larger than the slot's spend is a well-formed answer that means "cut
            # this slot to zero": clip it, as the budget tool would, instead of holding
            # the whole plan (the step-150 Optimizer lost 25% of its moves this way).
            overshoot.append(i + 1)
        a = max(x, 0.0) * u
        if not math.isfinite(a):
            return _fail(text, ParseError.NON_FINITE, f"slot {i + 1} overflows ({_f(x)} units)", enc)
        alloc.append(a)
    meta = {"encoding": enc, "answer_units": vals, "reason": reason}
    if overshoot:
        meta["clipped_to_zero"] = overshoot
    return Decision(alloc, text=text, error=None, meta=meta)
