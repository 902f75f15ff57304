"""Typed dataclass configs <-> dicts, JSON/YAML files and argparse flags, in one place.

Every command-line front end (``dara train``, ``dara run``/``bench``/``allocate``) builds
its flags from the fields of a config dataclass (``training.config``, ``graph.context.Context``), so a new field is a new flag with its help
text for free and names never drift between the Python API, config files and the CLI.

Conventions a config dataclass follows:

- help text lives in the field's ``metadata["description"]`` (the key LangGraph Studio
  and the react-agent template use);
- ``metadata["words"]`` maps extra spellings to values (``{"never": 0}``);
- nested dataclass fields become dotted flags (``--rollout.window``, plus ``--window``
  when the short name is free).

Layers, later wins: dataclass defaults < file < flags < keyword overrides
(:func:`build_config`). Unknown keys and wrong types raise ``ValueError`` naming the field.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import types
import typing
from pathlib import Path
from typing import Any


def described(default, description: str, **metadata):
    """A dataclass field with help text (shown by ``--help`` and in Studio)."""
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda d=default: type(d)(d),
                                 metadata={"description": description, **metadata})
    return dataclasses.field(default=default, metadata={"description": description, **metadata})


# ---------------------------------------------------------------------------------------
# validation helpers
# ---------------------------------------------------------------------------------------
def check_positive(name: str, v) -> None:
    if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
        raise ValueError(f"{name} must be a positive number, got {v!r}")


def check_nonnegative(name: str, v) -> None:
    if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
        raise ValueError(f"{name} must be a number >= 0, got {v!r}")


# ---------------------------------------------------------------------------------------
# loading: defaults < file < flags
# ---------------------------------------------------------------------------------------
def _hints(cls) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _is_config(tp) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _coerce(name: str, tp, value, words: dict | None = None):
    """Convert a JSON/YAML/CLI value to the field's type, naming the field on failure."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null", "")):
            return None
        inner = [a for a in args if a is not type(None)][0]
        return _coerce(name, inner, value, words)
    if origin is list:
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{name} must be a list, got {value!r}")
        return [_coerce(name, args[0] if args else str, v, words) for v in value]
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("1", "true", "yes", "on"):
            return True
        if isinstance(value, str) and value.lower() in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"{name} must be true or false, got {value!r}")
    if tp is int:
        if words and isinstance(value, str) and value.lower() in words:
            return words[value.lower()]
        try:
            f = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"{name} must be an integer, got {value!r}") from None
        if not f.is_integer():
            raise ValueError(f"{name} must be an integer, got {value!r}")
        return int(f)
    if tp is float:
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ValueError(f"{name} must be a number, got {value!r}") from None
    if tp is str:
        return str(value)
    return value


def from_dict(cls, data: dict, prefix: str = ""):
    """Build config ``cls`` from a (nested) dict; unknown keys are errors."""
    hints = _hints(cls)
    flds = {f.name: f for f in dataclasses.fields(cls)}
    names = set(flds)
    kw = {}
    for k, v in (data or {}).items():
        key = k.replace("-", "_")
        if key not in names:
            raise ValueError(f"unknown config key {prefix + k!r} for {cls.__name__}; "
                             f"known: {', '.join(sorted(names))}")
        tp = hints[key]
        if _is_config(tp):
            if not isinstance(v, dict):
                raise ValueError(f"{prefix + k} must be a mapping, got {v!r}")
            base = getattr(cls(), key)
            kw[key] = from_dict(tp, {**dataclasses.asdict(base), **v}, prefix + k + ".")
        else:
            kw[key] = _coerce(prefix + key, tp, v, flds[key].metadata.get("words"))
    return cls(**kw)


def to_dict(cfg) -> dict:
    return dataclasses.asdict(cfg)


def read_file(path: str | Path) -> dict:
    """Read a JSON or YAML config file into a dict."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"config file not found: {p}")
    text = p.read_text()
    if p.suffix.lower() in (".yaml", ".yml"):
        import yaml

        data = yaml.safe_load(text) or {}
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"{p}: not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{p}: the config must be a mapping, got {type(data).__name__}")
    return data


def add_flags(parser: argparse.ArgumentParser, cls, prefix: str = "", *, only=None,
              defaults: dict | None = None, names: dict | None = None, helps: dict | None = None) -> None:
    """One ``--flag`` per field (nested configs as ``--rollout.window`` and, when the
    name is unambiguous, ``--window``); ``Literal`` fields get their values as choices.

    By default (``defaults=None``) argparse defaults are suppressed, so only the flags
    given appear in the namespace and override a config file (:func:`build_config`).
    With ``defaults`` (a mapping, possibly empty) every flag gets a default, the field's
    own or ``defaults[name]``, and a given value is converted to the field's type while
    parsing, so a bad value is reported against its flag.

    ``only`` picks the fields to add (all by default), ``names`` replaces a field's flag
    spellings (``{"max_rounds": ["--rounds", "--max-rounds"]}``) and ``helps`` its help
    text (``metadata["description"]`` otherwise).
    """
    hints = _hints(cls)
    names, helps = names or {}, helps or {}
    for f in dataclasses.fields(cls):
        if only is not None and f.name not in only:
            continue
        tp = hints[f.name]
        if _is_config(tp):
            add_flags(parser, tp, prefix + f.name + ".")
            continue
        flag = "--" + (prefix + f.name).replace("_", "-")
        help_ = helps.get(f.name, f.metadata.get("description", ""))
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
        if defaults is not None:
            default = defaults.get(f.name, default)
        shown = ",".join(map(str, default)) if isinstance(default, list) else default
        flags = list(names.get(f.name, [flag]))
        short = "--" + f.name.replace("_", "-")
        if prefix and short not in parser._option_string_actions:
            flags.append(short)
        help_ = f"{help_} (default: {shown})".replace("%", "%%")  # argparse %-formats help
        kw: dict[str, Any] = {"dest": prefix + f.name, "help": help_,
                              "default": argparse.SUPPRESS if defaults is None else default}
        inner = _unwrap_optional(tp)
        if inner is bool:
            kw["action"] = argparse.BooleanOptionalAction
        elif typing.get_origin(inner) is typing.Literal:
            kw["choices"] = list(typing.get_args(inner))
        else:
            kw["metavar"] = (flags[0].lstrip("-").replace("-", "_") if f.name in names else f.name).upper()
            if defaults is not None:
                kw["type"] = _flag_converter(prefix + f.name, inner, f.metadata.get("words"))
        parser.add_argument(*flags, **kw)


def _unwrap_optional(tp):
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        rest = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(rest) == 1:
            return rest[0]
    return tp


def _flag_converter(name: str, tp, words: dict | None):
    """An argparse ``type=``: the flag's text as ``tp`` (text stays text for ``str``)."""
    def convert(text: str):
        if tp is str:
            return text
        try:
            return _coerce(name, tp, text, words)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    convert.__name__ = getattr(tp, "__name__", str(tp))
    return convert


def _nest(flat: dict) -> dict:
    out: dict = {}
    for k, v in flat.items():
        parts = k.split(".")
        d = out
        for p in parts[:-1]:
            d = d.setdefault(p, {})
        d[parts[-1]] = v
    return out


def _deep_merge(a: dict, b: dict) -> dict:
    out = dict(a)
    for k, v in b.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def build_config(cls, file: str | None = None, flags: dict | None = None, **overrides):
    """Defaults < ``file`` < ``flags`` (flat dotted keys from :func:`add_flags`) < overrides; validated."""
    data: dict = {}
    if file:
        data = read_file(file)
    data = _deep_merge(data, _nest(flags or {}))
    data = _deep_merge(data, _nest(overrides))
    cfg = from_dict(cls, data)
    cfg.validate()
    return cfg
