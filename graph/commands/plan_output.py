"""What ``dara allocate`` shows and writes for a plan: the table, the reason, the JSON.

The numbers come from ``tools.plan_report`` (per-slot changes to the cent, predicted
MROI, expected change in return with its interval, a reason built from those facts, the
self-check's flags); this module only lays them out for a terminal and for ``--json``.

``--json`` schema (one object)::

    {"current": [T], "plan": [T] | null, "decimals": int, "changes": [{label, current, recommended, change,
     share, mroi_last, mroi_predicted (null: no slope)}], "expected_uplift": {"value", "low", "high"} | null,
     "flags": [{kind, slots, numbers, message}], "reason": str, "warnings": [str],
     "raw_text": str, "rejected_answers": [{text, error, seed}], "source": str,
     "provenance": {"model", "backend", "policies", "adapters", "seed", "version"}}

``warnings`` are the limits of the evidence (no interval for the uplift; slots funded
outside the spends the records saw). ``provenance`` is ``graph.provenance.provenance``.

``source``: ``model``, a numeric policy's name, ``fallback:<policy>`` (``--fallback``),
``edited`` (the analyst's edit under ``--approve``), ``none``, or a marker the graph set.
``plan`` is null (and ``source`` ``"none"``) when no new plan was produced; ``reason``
then says why.
"""

from __future__ import annotations

from typing import Any

from tools.money import format_money, format_ratio, round_money
from tools.plan_report import PlanReport

HEADERS = ("slot", "current", "recommended", "change", "share", "MROI last", "MROI predicted")


def _signed(x: float, decimals: int = 2) -> str:
    text = format_money(x, decimals)
    return text if text.startswith("-") or x == 0 else "+" + text


def _uplift_line(report: PlanReport) -> str:
    u = report.expected_uplift
    d = report.decimals
    line = f"expected change in return: {_signed(u.value, d)}"
    if u.low is not None and u.high is not None:
        line += f" (95% interval {_signed(u.low, d)} to {_signed(u.high, d)})"
    return line


def plan_table(report: PlanReport) -> str:
    """The per-slot table with a total row; money to the cent (``report.decimals``) with
    thousands separators."""
    d = report.decimals
    rows = [[c.label, format_money(c.current, d), format_money(c.recommended, d), _signed(c.change, d),
             f"{100 * c.share:.1f}%", format_ratio(c.mroi_last), format_ratio(c.mroi_predicted)]
            for c in report.changes]
    total_change = round(sum(c.change for c in report.changes), d) + 0.0  # never "-0.00"
    rows.append(["total", format_money(sum(report.current), d), format_money(sum(report.plan), d),
                 _signed(total_change, d), "100.0%", "", ""])
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(HEADERS)]

    def line(cells) -> str:
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(HEADERS), rule, *(line(r) for r in rows[:-1]), rule, line(rows[-1])])


SHOWN_FLAGS = 5
"""Flags printed above the table; the rest are counted (all of them are in ``--json``)."""


def format_flags(flags: list[dict], limit: int = SHOWN_FLAGS) -> list[str]:
    """One line per self-check flag (shown above the table), at most ``limit``."""
    first = sorted(flags, key=lambda f: f.get("kind") == "against_evidence")  # plan-wide findings first
    lines = [f"check ({f.get('kind', 'flag')}): {f.get('message', '')}" for f in first[:limit]]
    hidden = first[limit:]
    if hidden:
        kinds = ", ".join(sorted({str(f.get("kind")) for f in hidden}))
        lines.append(f"check: {len(hidden)} more ({kinds}); all of them are in --json")
    return lines


def format_plan(report: PlanReport, flags: list[dict], source_note: str | None) -> str:
    """Flags, source, table, expected uplift, reason, warnings and notes."""
    lines = format_flags(flags)
    if source_note:
        lines.append(source_note)
    if lines:
        lines.append("")
    lines += [plan_table(report), "", _uplift_line(report), f"reason: {report.reason}"]
    lines += [f"warning: {w}" for w in report.warnings]
    lines += [f"note: {n}" for n in report.notes]
    return "\n".join(lines)


def plan_json(report: PlanReport | None, *, current: list[float], flags: list[dict], reason: str | None,
              raw_text: str, source: str, prov: dict, rejected: list[dict] | None = None,
              decimals: int = 2) -> dict[str, Any]:
    """The ``--json`` object (see the module doc for the schema); without a report,
    ``current`` is rounded to ``decimals`` places (the task's ``money_decimals``)."""
    if report is None:
        return {"current": round_money(current, decimals=decimals), "plan": None,
                "decimals": decimals, "changes": [], "expected_uplift": None,
                "flags": flags, "reason": reason, "warnings": [], "raw_text": raw_text,
                "rejected_answers": list(rejected or []), "source": "none", "provenance": prov}
    return {"current": report.current, "plan": report.plan, "decimals": report.decimals,
            "changes": [c.model_dump() for c in report.changes],
            "expected_uplift": report.expected_uplift.model_dump(), "flags": flags,
            "reason": report.reason, "warnings": list(report.warnings), "raw_text": raw_text,
            "rejected_answers": list(rejected or []), "source": source, "provenance": prov}
