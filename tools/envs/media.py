"""`media`: synthetic channels that look like what media-mix models fit.

Real channels fitted by Robyn, Meridian or PyMC-Marketing differ from the textbook
families in three ways that an allocator must survive:

- **levels far apart** — one channel returns 100x more per extra unit than another;
- **nearly linear** — over the range a plan moves in, many fitted curves barely bend
  (the half-saturation point lies far above current spend);
- **corner solutions** — the best plan gives some channels nothing.

Each slot is a Hill saturation curve applied to the *steady-state adstock* of its spend:
with geometric carry-over ``theta`` and a constant spend ``x`` per period, the adstocked
level is ``x / (1 - theta)``, so the per-period response is
``beta * hill(x / (1 - theta); K, s)`` and its derivative is a Hill derivative with the
half-saturation point ``K (1 - theta)``. Slots stay independent (no cross-period carry
between different slots), so the water-filling oracle is exact and the family reuses the
Hill closed forms (value, inverse, the concave envelope for S-shaped curves).

Draws, in units of the uniform share ``u = B/T`` (scale-free like every synthetic family):

- peak MROI ``10^U(-0.5, 0)`` for most channels and ``10^U(-2, -0.5)`` for a weak 15% —
  up to 100x between slots, weak ones often best left at zero;
- half-saturation ``K ~ logU(0.2, 2) u`` before carry-over, and ``logU(4, 20) u`` for a
  nearly linear 20% (they barely bend over ``[0, 2u]``);
- carry-over ``theta ~ U(0, 0.8)``; shape ``s ~ U(1, 3)``.
"""

from __future__ import annotations

import numpy as np

from tools.envs.synthetic import HillEnv, _synthetic_builder, hill_tangent

__all__ = ["MediaEnv", "BUILDERS"]


class MediaEnv(HillEnv):
    """Hill saturation on steady-state geometric adstock; see the module docstring."""

    family = "media"


def _draw_media(rng, m, T, u, kw):
    weak = rng.uniform(size=(m, T)) < 0.15  # channels that may deserve nothing
    peak = 10.0 ** np.where(weak, rng.uniform(-2.0, -0.5, size=(m, T)), rng.uniform(-0.5, 0.0, size=(m, T)))
    linear = rng.uniform(size=(m, T)) < 0.2  # half-saturation far above any plan's spend
    K = np.exp(np.where(linear, rng.uniform(np.log(4.0), np.log(20.0), size=(m, T)),
                        rng.uniform(np.log(0.2), np.log(2.0), size=(m, T))))
    theta = rng.uniform(0.0, 0.8, size=(m, T))
    s = rng.uniform(1.0, 3.0, size=(m, T))
    K_eff = K * (1.0 - theta)  # half-saturation in spend units once carry-over is counted
    _, slope = hill_tangent(K_eff, s)
    beta = peak / slope  # value scale so the plateau MROI equals the drawn peak (u = 1)
    return {"beta": beta * u, "K": K_eff * u, "s": s, "theta": theta}


BUILDERS = {"media": _synthetic_builder(MediaEnv, _draw_media)}
