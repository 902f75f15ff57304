"""Which prompt encoding an adapter was trained on: the adapter says so itself.

An adapter answers only the prompts it was trained on; read with another encoding it
emits numbers that decode fine and mean something else (a signed change read as an
allocation), which no parse check catches. So the encoding travels with the adapter:

- ``<adapter>/dara_adapter.json`` — ``{"role", "encoding", ...}``, written next to the
  PEFT files of every shipped adapter and by :func:`write_adapter_meta`;
- a training run's ``adapter/`` also reads its run's ``../config.json`` (the trainers
  write the resolved ``encoding`` there), so runs trained before this file existed are
  self-describing too.

The same files say which slot counts the adapter was trained on (``periods_range``, or
the run config's ``rollout.periods_range``): :func:`trained_periods`, so a plan for a
T outside them can say it is extrapolating.

:func:`encoding_for` is the one rule every entry point uses: an explicit encoding, else
the adapter's declared one, else the role's default (``policies.prompts.DEFAULT_ENCODING``).
"""

from __future__ import annotations

import json
from pathlib import Path

from policies.prompts import ENCODINGS, Encoding, resolve_encoding

ADAPTER_META = "dara_adapter.json"


def write_adapter_meta(adapter_dir: str | Path, role: str, encoding: str, **extra) -> Path:
    """Write ``dara_adapter.json`` into ``adapter_dir`` (``extra``: run, steps, reward ...)."""
    enc = resolve_encoding(role, encoding)
    path = Path(adapter_dir) / ADAPTER_META
    path.write_text(json.dumps({"role": role, "encoding": enc, **extra}, indent=1, sort_keys=True) + "\n")
    return path


def _read_encoding(path: Path, run_config: bool) -> str | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or (run_config and data.get("mode") not in ("sft", "grpo")):
        return None  # a config.json that is not a DARA training run's says nothing
    enc = data.get("encoding")
    if enc is not None and enc not in ENCODINGS:
        raise ValueError(f"{path}: encoding {enc!r} is not one of {', '.join(ENCODINGS)}")
    return enc


def declared_encoding(adapter_dir: str | Path | None) -> str | None:
    """The encoding ``adapter_dir`` declares (its ``dara_adapter.json``, else its run's
    ``config.json``), or ``None`` when it declares none."""
    if adapter_dir is None or str(adapter_dir) == "none":
        return None
    d = Path(adapter_dir)
    for path, run_config in ((d / ADAPTER_META, False), (d.parent / "config.json", True)):
        if path.is_file() and (enc := _read_encoding(path, run_config)) is not None:
            return enc
    return None


def trained_periods(adapter_dir: str | Path | None) -> tuple[int, int] | None:
    """The ``[low, high]`` slot counts ``adapter_dir`` was trained on, or ``None`` when it
    does not say (``dara_adapter.json`` ``periods_range``, else its run's
    ``rollout.periods_range``)."""
    if adapter_dir is None or str(adapter_dir) == "none":
        return None
    d = Path(adapter_dir)
    for path, run_config in ((d / ADAPTER_META, False), (d.parent / "config.json", True)):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if not isinstance(data, dict) or (run_config and data.get("mode") not in ("sft", "grpo")):
            continue  # a config.json that is not a DARA training run's says nothing
        data = data.get("rollout") if run_config else data
        if not isinstance(data, dict):
            continue
        rng = data.get("periods_range")
        if isinstance(rng, list) and len(rng) == 2 and all(isinstance(x, int) for x in rng):
            return int(rng[0]), int(rng[1])
        if run_config and isinstance(data.get("periods"), int):  # a fixed-T run
            return int(data["periods"]), int(data["periods"])
    return None


def encoding_for(role: str, adapter_dir: str | Path | None, encoding: str | None = None) -> Encoding:
    """Explicit ``encoding``, else the adapter's declared one, else the role's default."""
    if encoding is not None:
        return resolve_encoding(role, encoding)
    return resolve_encoding(role, declared_encoding(adapter_dir))
