"""Failures, checkpoints and goodput of a training job, vectorized (every argument broadcasts).

Failures of independent components in series are a Poisson process whose rate is the sum of
the components' rates (Kokolis et al., HPCA 2025: ``MTTF = 1 / (N_nodes r_f)``). A job
checkpoints every ``tau`` seconds of compute, each checkpoint blocking it ``delta`` seconds; a
failure loses the work since the last checkpoint and costs a restart ``R`` during which
failures may strike again. The expected wall time of one segment of ``tau`` useful seconds is
(Daly, FGCS 2006, exact for Poisson failures)::

    E = M e^(R/M) (e^((tau + delta)/M) - 1)

and goodput = ``tau / E``. Planned interruptions (``planned_rate`` per second) cost a restart
each without lost work and stretch the wall time by ``1 + planned_rate R`` (first order).
"""

from __future__ import annotations

from typing import Any

from trnlab.perf._xp import xp_of

DAY = 86400.0  # [s]


def failure_rate(n_chips: Any, chips_per_node: Any, per_chip: Any, per_node: Any) -> Any:
    """Job failure rate [1/s] from rates per 1,000 chip-days and per 1,000 node-days [1]:
    ``(N per_chip + N / chips_per_node per_node) / (1000 x 86400 s)``."""
    return (n_chips * per_chip + n_chips / chips_per_node * per_node) / (1000.0 * DAY)


def young_interval(delta: Any, mtbf: Any) -> Any:
    """Young's (1974) checkpoint interval [s]: ``sqrt(2 delta M)``."""
    xp = xp_of(delta, mtbf)
    return xp.sqrt(2.0 * delta * mtbf)


def daly_interval(delta: Any, mtbf: Any) -> Any:
    """Daly's (2006) higher-order optimum [s]: ``sqrt(2 delta M) [1 + sqrt(delta/2M)/3 +
    (delta/2M)/9] - delta`` for ``delta < 2M``, else ``M``."""
    xp = xp_of(delta, mtbf)
    x = delta / (2.0 * mtbf)
    tau = xp.sqrt(2.0 * delta * mtbf) * (1.0 + xp.sqrt(x) / 3.0 + x / 9.0) - delta
    return xp.where(x < 1.0, tau, mtbf)


def segment_time(tau: Any, delta: Any, restart: Any, mtbf: Any) -> Any:
    """Expected wall time of ``tau`` useful seconds [s] (Daly 2006):
    ``M e^(R/M) (e^((tau+delta)/M) - 1)``."""
    xp = xp_of(tau, delta, restart, mtbf)
    return mtbf * xp.exp(restart / mtbf) * xp.expm1((tau + delta) / mtbf)


def goodput(tau: Any, delta: Any, restart: Any, mtbf: Any, planned_rate: Any = 0.0) -> Any:
    """Useful time / wall time [1]: ``tau / E / (1 + planned_rate R)``."""
    return tau / segment_time(tau, delta, restart, mtbf) / (1.0 + planned_rate * restart)


def truncated_exp_moments(t: Any, mtbf: Any) -> tuple[Any, Any]:
    """Mean [s] and variance [s^2] of the time to a failure given that it strikes within ``t``
    (exponential of mean ``M`` truncated to ``[0, t]``): ``M - t/(e^(t/M) - 1)`` and
    ``2M^2 - (t^2 + 2 M t)/(e^(t/M) - 1) - mean^2``."""
    xp = xp_of(t, mtbf)
    em1 = xp.expm1(t / mtbf)
    mean = mtbf - t / em1
    var = 2.0 * mtbf**2 - (t * t + 2.0 * mtbf * t) / em1 - mean * mean
    return mean, xp.maximum(var, 0.0)


def run_wall_time(segments: Any, tau: Any, delta: Any, restart: Any, mtbf: Any,
                  failures: Any, restart_failures: Any, z_work: Any, z_restart: Any,
                  planned_rate: Any = 0.0) -> Any:
    """Wall time of one simulated run [s] given its random counts (arrays broadcast):
    ``segments`` segments of ``tau + delta``; ``failures`` during compute (each losing a
    truncated-exponential time, summed as a normal: ``K mean + sqrt(K var) z_work``) and a
    restart each; ``restart_failures`` failures during restarts (likewise, with ``z_restart``).
    The engine draws the counts (negative binomials); the expectation is ``segments x``
    :func:`segment_time` ``x (1 + planned_rate R)``."""
    xp = xp_of(segments, tau, mtbf, failures, z_work)
    t = tau + delta
    m_t, v_t = truncated_exp_moments(t, mtbf)
    m_r, v_r = truncated_exp_moments(restart, mtbf)
    lost_work = xp.maximum(failures * m_t + xp.sqrt(failures * v_t) * z_work, 0.0)
    lost_restart = xp.maximum(restart_failures * m_r + xp.sqrt(restart_failures * v_r)
                              * z_restart, 0.0)
    wall = segments * t + lost_work + failures * restart + lost_restart
    return wall * (1.0 + planned_rate * restart)


def checkpoint_time(nbytes: Any, n_chips: Any, bw_per_chip: Any, floor: Any) -> Any:
    """Blocking checkpoint write (or restore read) [s]: ``floor + B / (N bw_per_chip)``."""
    return floor + nbytes / (n_chips * bw_per_chip)
