"""One per-process cache of environments rebuilt from specs, shared by the langchain tools
and the graph's simulator feedback."""

from __future__ import annotations

import json

import numpy as np
import pytest

import tools.envs as envs
from tools.envs import env_from_spec, make_envs
from tools.langchain_tools import make_tools


@pytest.fixture
def generations(monkeypatch):
    """Count how often rows are generated (each uncached rebuild generates once)."""
    calls = []
    real = envs._generate

    def counting(spec, rows, kw):
        calls.append(spec["family"])
        return real(spec, rows, kw)

    monkeypatch.setattr(envs, "_generate", counting)
    return calls


def test_tools_and_feedback_share_one_build(generations):
    from graph import feedback

    spec = json.loads(json.dumps(make_envs("quadratic", 3, seed=9871, noise=0.1).spec))
    generations.clear()
    query = make_tools()[0]
    seen = query.invoke({"allocation": [1.0] * 6, "index": 1, "spec": spec, "seed": 4})
    e = feedback.get_env({**spec, "index": 1})
    assert generations == ["quadratic"]  # the feedback reused the tools' build
    assert np.allclose(seen["mroi"], e.observe(np.ones((1, 6)), np.random.default_rng(4))[0])
    make_tools()[2].invoke({"index": 1, "spec": spec})  # a second tool set: still cached
    assert generations == ["quadratic"]


def test_cache_keys_on_spec_index_and_options(generations):
    from tools.envs.cache import cached_env_from_spec

    spec = make_envs("hill", 4, seed=9872).spec
    generations.clear()
    a = cached_env_from_spec(spec, 2)
    assert cached_env_from_spec(json.loads(json.dumps(spec)), 2) is a
    assert cached_env_from_spec(dict(reversed(list(spec.items()))), 2) is a
    b = cached_env_from_spec(spec, 3)
    assert b is not a and np.array_equal(b.params["K"], env_from_spec(spec, 3).params["K"])
    with pytest.raises(IndexError, match="out of range"):
        cached_env_from_spec(spec, 4)


def test_curves_callables_are_part_of_the_key():
    from tools.envs.cache import cached_env_from_spec

    def steep(x):
        return np.exp(-x)

    def flat(x):
        return np.exp(-0.1 * x)

    spec = make_envs("curves", 2, mroi_fns=[steep, flat]).spec
    one = cached_env_from_spec(spec, 0, mroi_fns=[steep, flat])
    assert cached_env_from_spec(spec, 0, mroi_fns=[steep, flat]) is one
    other = cached_env_from_spec(spec, 0, mroi_fns=[flat, steep])
    assert other is not one
    assert other.mroi(np.ones((1, 2)))[0, 0] == pytest.approx(np.exp(-0.1))
    with pytest.raises(ValueError, match="hashable"):
        cached_env_from_spec(spec, 0, mroi_fns=[steep, flat], lower={"a": 1})
