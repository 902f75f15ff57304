"""A ``delta-hint`` answer that copies the hint one slot out of step is told apart from
copies, holds and real departures (``policies.observations.misaligned_copy``)."""

import pytest

from policies.observations import misaligned_copy

# recorded in the matrix (docs/data/matrix-grow): an entry skipped, the rest one slot early
HINT = [-0.0, 0.01, -0.03, -0.03, 0.21, -0.03, -0.05, 0.09, -0.12, -0.05]
SKIPPED = [0.0, 0.01, -0.03, 0.21, -0.03, -0.05, 0.09, -0.12, -0.05, 0.09]
MEDIA_HINT = [0.26, 0.56, -0.23, 0.27, -0.43, 0.04, -0.06, -0.53, 1.0, -0.89]
REPEATED = [0.26, 0.56, -0.23, 0.27, -0.43, -0.23, 0.04, -0.06, -0.53, 1.0]  # one entry repeated


@pytest.mark.parametrize("answer, hint", [(SKIPPED, HINT), (REPEATED, MEDIA_HINT),
                                          ([0.0, 0.0, 0.0, 0.0, 0.3, -0.3, 0.0], [0.0, 0.0, 0.0, 0.0, 0.0, 0.3, -0.3]),
                                          ([0.0, 0.0, 0.0, 0.5, 0.0, -0.5], [0.0, 0.0, 0.5, 0.0, -0.5, 0.0])])
def test_slips_are_misaligned(answer, hint):
    assert misaligned_copy(answer, hint)


@pytest.mark.parametrize("answer, hint", [
    (HINT, HINT),                                          # a copy
    ([h + 0.005 for h in HINT], HINT),                     # a copy, to rounding
    ([0.0] * 10, HINT),                                    # a hold
    ([1.0, 0.0, 0.0, 5.0, 0.0], [1.0, 0.0, 1.0, -2.48, 0.48]),  # a restated row (not_a_change's job)
    ([0.0, 0.0, 0.0, 0.5, -0.5, 0.0], [0.0, 0.0, 0.5, 0.0, -0.5, 0.0]),  # one move shifted: too little evidence
    ([0.2, -0.1, 0.3, -0.4, 0.0, 0.0], [0.1, -0.1, 0.3, -0.3, 0.0, 0.0]),  # a departure in place
    ([0.1, -0.1], [-0.1, 0.1]),                            # too short to tell
    (SKIPPED[:9], HINT),                                   # lengths differ (the decoder's job)
])
def test_copies_holds_and_departures_are_not(answer, hint):
    assert not misaligned_copy(answer, hint)
