"""``benchmarks/slip_probe.py``: answer labels against the hint and the paired counts."""

import pytest

from conftest import load_benchmark


def _probe():
    return load_benchmark("slip_probe")


def test_labels_tell_copies_slips_departures_and_rejections_apart():
    probe = _probe()
    hint = [0.0, 0.5, -0.3, 0.2, -0.4, 0.0]
    assert probe.label(None, hint) == "rej"
    assert probe.label([0.0, 0.5, -0.3, 0.2, -0.4, 0.0], hint) == "copy"
    assert probe.label([0.0, 0.505, -0.3, 0.2, -0.4, 0.0], hint) == "copy"  # rounding
    assert probe.label([0.5, -0.3, 0.2, -0.4, 0.0, 0.0], hint) == "slip"  # one slot early
    assert probe.label([0.3, -0.3, 0.0, 0.0, 0.0, 0.0], hint) == "other"


def test_paired_counts_and_sign_test():
    probe = _probe()
    base = ["slip"] * 8 + ["copy"] * 4
    other = ["copy"] * 8 + ["copy", "copy", "slip", "copy"]
    c = probe.compare(base, other)
    assert (c["removed"], c["added"]) == (8, 1)
    assert c["p"] == pytest.approx(0.0390625)
    assert probe.compare(["copy"], ["copy"]) == {"removed": 0, "added": 0, "p": 1.0}
