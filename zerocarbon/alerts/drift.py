"""Efficiency drift: an ISO 50006 energy baseline per production line and a tabular CUSUM.

Energy baseline (ISO 50006:2014, "Energy management systems - Measuring energy
performance using energy baselines (EnB) and energy performance indicators (EnPI)",
clause 4.4, establishing energy baselines; 4.3, EnPIs): a line's energy per period is
modelled by ordinary least squares on its output and optional relevant variables::

    E_i = a + b * U_i + sum_k c_k * X_ik + e_i        [kWh per period]

with ``U`` the units produced in the period and ``X`` relevant variables such as the
outdoor temperature. The fit, R^2 and the residual standard deviation
``s = sqrt(SSE / (n - p))`` (``p`` fitted coefficients, intercept included) follow
Montgomery, Peck and Vining, "Introduction to Linear Regression Analysis", 5th ed.,
sec. 3.2 (eq. 3.17 for ``s^2``, sec. 3.3.2 for R^2).

Idle periods (zero production) are kept in the fit: they are what pins down the
intercept ``a``, the line's fixed load per period (lighting, compressed-air leaks,
standby). Dropping them would extrapolate ``a`` from busy periods only, and the model
would not cover the whole range of output it is then applied to.

The EnPI compared here is the energy per unit over a period (ISO 50006 clause 4.3),
actual against the value the baseline's model expects.

Drift detection: a tabular CUSUM (Montgomery, "Introduction to Statistical Quality
Control", 6th ed., sec. 9.1.2, eqs. 9.2 and 9.3) on the residuals ``x_i = actual -
expected`` per period, with in-control mean ``mu0 = 0``::

    C+_i = max(0, x_i - (mu0 + K) + C+_{i-1})
    C-_i = max(0, (mu0 - K) - x_i + C-_{i-1})      C+_0 = C-_0 = 0

``K = k * sigma`` and ``H = h * sigma``, ``sigma`` the baseline's residual standard
deviation (scaled by ``sqrt(m)`` for sums of ``m`` periods). Montgomery sec. 9.1.3
recommends ``k = 0.5`` (half the one-sigma shift to be detected) with ``h = 4`` or
``h = 5``; those are the defaults of :class:`CusumParams` (``h = 5``: in-control ARL
465 two-sided, about 930 for one side, Table 9.3). A signal is ``C > H``; after a signal
the chart restarts from zero (sec. 9.1.2, after the assignable cause is dealt with).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

MIN_DEGREES_OF_FREEDOM = 2  # n - p: fewer leaves the residual spread meaningless


@dataclass(frozen=True, slots=True)
class Baseline:
    """An energy baseline ``E = a + b * U + sum_k c_k * X_k`` fitted by least squares.

    Attributes
    ----------
    fixed_kwh : float
        Intercept ``a``: energy per period at zero output [kWh].
    kwh_per_unit : float
        Slope ``b``: energy per unit produced [kWh/unit].
    extra_coefficients : tuple of float
        ``c_k`` per relevant variable [kWh per unit of that variable].
    r_squared : float
        Coefficient of determination, ``1 - SSE / SST`` [-].
    residual_std_kwh : float
        ``sqrt(SSE / (n - p))`` [kWh per period].
    n : int
        Number of periods in the fit.
    """

    fixed_kwh: float
    kwh_per_unit: float
    extra_coefficients: tuple[float, ...]
    r_squared: float
    residual_std_kwh: float
    n: int

    @property
    def parameters(self) -> int:
        """Fitted coefficients ``p`` (intercept, slope, one per relevant variable)."""
        return 2 + len(self.extra_coefficients)


def _as_vector(name: str, values: npt.ArrayLike) -> FloatArray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return array


def _as_extra(extra: npt.ArrayLike | None, n: int) -> FloatArray:
    if extra is None:
        return np.empty((n, 0), dtype=np.float64)
    array = np.asarray(extra, dtype=np.float64)
    if array.ndim == 1:
        array = array[:, np.newaxis]
    if array.ndim != 2 or array.shape[0] != n:
        raise ValueError(f"extra must have shape ({n},) or ({n}, m), got {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError("extra contains NaN or infinite values")
    return array


def _design(units: FloatArray, extra: FloatArray) -> FloatArray:
    return np.column_stack((np.ones_like(units), units, extra))


def fit_baseline(
    energy_kwh: npt.ArrayLike, units: npt.ArrayLike, extra: npt.ArrayLike | None = None
) -> Baseline:
    """Fit ``E = a + b * U (+ c_k * X_k)`` by ordinary least squares.

    Parameters
    ----------
    energy_kwh : array_like, shape (n,)
        Energy of the line per period [kWh]; idle periods included.
    units : array_like, shape (n,)
        Units produced per period [unit].
    extra : array_like, shape (n,) or (n, m), optional
        Relevant variables (ISO 50006 clause 4.2), e.g. outdoor temperature [degC].

    Raises
    ------
    ValueError
        NaN or infinite input, mismatched lengths, fewer than ``p + 2`` periods, no
        variance in ``units`` or in ``energy_kwh``, or relevant variables that are
        constant or collinear with the others (rank-deficient design).

    References
    ----------
    ISO 50006:2014 clause 4.4; Montgomery, Peck and Vining, "Introduction to
    Linear Regression Analysis", 5th ed., sec. 3.2-3.3.
    """
    energy = _as_vector("energy_kwh", energy_kwh)
    produced = _as_vector("units", units)
    if produced.shape != energy.shape:
        raise ValueError(f"energy_kwh and units differ in length: {energy.size} != {produced.size}")
    n = energy.size
    relevant = _as_extra(extra, n)
    p = 2 + relevant.shape[1]
    if n - p < MIN_DEGREES_OF_FREEDOM:
        raise ValueError(
            f"too few periods for the baseline: {n} periods for {p} coefficients "
            f"(need at least {p + MIN_DEGREES_OF_FREEDOM})"
        )
    if np.ptp(produced) == 0.0:
        raise ValueError("units has zero variance: the energy per unit cannot be fitted")
    total_ss = float(np.sum((energy - energy.mean()) ** 2))
    if total_ss == 0.0:
        raise ValueError("energy_kwh has zero variance: R^2 is undefined")
    design = _design(produced, relevant)
    coefficients, _, rank, _ = np.linalg.lstsq(design, energy, rcond=None)
    if rank < p:
        raise ValueError(
            f"extra is constant or collinear with units: the design matrix has rank {rank} < {p}"
        )
    residuals = energy - design @ coefficients
    sse = float(residuals @ residuals)
    return Baseline(
        fixed_kwh=float(coefficients[0]),
        kwh_per_unit=float(coefficients[1]),
        extra_coefficients=tuple(float(c) for c in coefficients[2:]),
        r_squared=1.0 - sse / total_ss,
        residual_std_kwh=math.sqrt(sse / (n - p)),
        n=n,
    )


def expected(
    baseline: Baseline, units: npt.ArrayLike, extra: npt.ArrayLike | None = None
) -> FloatArray:
    """Energy the baseline expects per period for ``units`` (and ``extra``) [kWh]."""
    produced = _as_vector("units", units)
    relevant = _as_extra(extra, produced.size)
    if relevant.shape[1] != len(baseline.extra_coefficients):
        raise ValueError(
            f"extra has {relevant.shape[1]} columns, the baseline was fitted with "
            f"{len(baseline.extra_coefficients)}"
        )
    coefficients = np.array(
        (baseline.fixed_kwh, baseline.kwh_per_unit, *baseline.extra_coefficients)
    )
    result: FloatArray = _design(produced, relevant) @ coefficients
    return result


@dataclass(frozen=True, slots=True)
class EnPI:
    """Energy per unit over a reporting period, actual against the baseline's expectation
    (ISO 50006:2014 clause 4.3)."""

    actual_kwh_per_unit: float
    expected_kwh_per_unit: float

    @property
    def ratio(self) -> float:
        """Actual / expected [-]: 1.05 is 5 % more energy per unit than the baseline."""
        return self.actual_kwh_per_unit / self.expected_kwh_per_unit


def enpi(
    baseline: Baseline,
    energy_kwh: npt.ArrayLike,
    units: npt.ArrayLike,
    extra: npt.ArrayLike | None = None,
) -> EnPI:
    """EnPI over the periods given: total energy / total units, actual and expected.

    Totals, not a mean of per-period ratios, so idle periods count with their fixed load
    and do not divide by zero. Raises ``ValueError`` when no unit was produced.
    """
    energy = _as_vector("energy_kwh", energy_kwh)
    produced = _as_vector("units", units)
    total_units = float(produced.sum())
    if total_units <= 0.0:
        raise ValueError("no units produced in the period: energy per unit is undefined")
    total_expected = float(expected(baseline, produced, extra).sum())
    return EnPI(float(energy.sum()) / total_units, total_expected / total_units)


def sum_per_block(values: npt.ArrayLike, periods_per_block: int) -> FloatArray:
    """Sums of consecutive blocks of ``periods_per_block`` periods (hours -> shifts);
    an incomplete last block is left out. The residual spread of a block is
    ``residual_std_kwh * sqrt(periods_per_block)`` for independent residuals."""
    array = _as_vector("values", values)
    if periods_per_block < 1:
        raise ValueError(f"periods_per_block must be >= 1, got {periods_per_block}")
    whole = array.size // periods_per_block * periods_per_block
    sums: FloatArray = array[:whole].reshape(-1, periods_per_block).sum(axis=1)
    return sums


@dataclass(frozen=True, slots=True)
class CusumParams:
    """Tabular CUSUM settings (Montgomery, SQC 6th ed., sec. 9.1.2-9.1.3).

    Attributes
    ----------
    sigma_kwh : float
        Standard deviation of one period's residual [kWh] (the baseline's
        ``residual_std_kwh``, times ``sqrt(m)`` for blocks of ``m`` periods).
    k : float
        Reference value in sigmas; ``K = k * sigma`` [-]. Default 0.5.
    h : float
        Decision interval in sigmas; ``H = h * sigma`` [-]. Default 5.
    target_kwh : float
        In-control mean ``mu0`` of the residuals [kWh]; 0 for an unbiased baseline.
    reset_after_alarm : bool
        Restart both sums from zero in the period after a signal.
    """

    sigma_kwh: float
    k: float = 0.5
    h: float = 5.0
    target_kwh: float = 0.0
    reset_after_alarm: bool = True

    def __post_init__(self) -> None:
        if not (math.isfinite(self.sigma_kwh) and self.sigma_kwh > 0.0):
            raise ValueError(f"sigma_kwh must be finite and > 0, got {self.sigma_kwh}")
        if not (math.isfinite(self.k) and self.k >= 0.0):
            raise ValueError(f"k must be finite and >= 0, got {self.k}")
        if not (math.isfinite(self.h) and self.h > 0.0):
            raise ValueError(f"h must be finite and > 0, got {self.h}")

    @property
    def reference_kwh(self) -> float:
        """``K`` [kWh]."""
        return self.k * self.sigma_kwh

    @property
    def limit_kwh(self) -> float:
        """``H`` [kWh]."""
        return self.h * self.sigma_kwh


@dataclass(frozen=True, slots=True)
class CusumState:
    """The CUSUM after a period: the two sums [kWh] and whether each exceeds ``H``."""

    upper_kwh: float = 0.0
    lower_kwh: float = 0.0
    upper_alarm: bool = False
    lower_alarm: bool = False

    @property
    def alarm(self) -> bool:
        """Either side signalled in this period."""
        return self.upper_alarm or self.lower_alarm

    def update(self, residual_kwh: float, params: CusumParams) -> CusumState:
        """The state after one more period with residual ``actual - expected`` [kWh]."""
        if not math.isfinite(residual_kwh):
            raise ValueError(f"residual_kwh must be finite, got {residual_kwh}")
        upper, lower = self.upper_kwh, self.lower_kwh
        if params.reset_after_alarm and self.alarm:
            upper = lower = 0.0
        upper = max(0.0, residual_kwh - (params.target_kwh + params.reference_kwh) + upper)
        lower = max(0.0, (params.target_kwh - params.reference_kwh) - residual_kwh + lower)
        return CusumState(upper, lower, upper > params.limit_kwh, lower > params.limit_kwh)


@dataclass(frozen=True, slots=True)
class CusumSeries:
    """The CUSUM over a series of periods, one entry per period."""

    upper_kwh: FloatArray
    lower_kwh: FloatArray
    upper_alarm: BoolArray
    lower_alarm: BoolArray

    @property
    def alarm_indices(self) -> tuple[int, ...]:
        """Periods in which either side signalled."""
        return tuple(int(i) for i in np.flatnonzero(self.upper_alarm | self.lower_alarm))


def _one_sided(increments: FloatArray) -> FloatArray:
    """``C_i = max(0, C_{i-1} + y_i)``, ``C_0 = 0``, in closed form: the Lindley
    recursion equals ``S_i - min(0, min_{j<=i} S_j)`` with ``S`` the running sum."""
    running = np.cumsum(increments)
    floor = np.minimum.accumulate(np.minimum(running, 0.0))
    result: FloatArray = running - floor
    return result


def cusum_series(residuals_kwh: npt.ArrayLike, params: CusumParams) -> CusumSeries:
    """Tabular CUSUM of a whole series at once (vectorised; the same values as folding
    :meth:`CusumState.update` over it, up to rounding).

    With ``reset_after_alarm`` the series is computed segment by segment, one numpy pass
    per signal.
    """
    x = _as_vector("residuals_kwh", residuals_kwh)
    n = x.size
    up_inc = x - (params.target_kwh + params.reference_kwh)
    low_inc = (params.target_kwh - params.reference_kwh) - x
    upper = np.zeros(n)
    lower = np.zeros(n)
    start = 0
    while start < n:
        upper[start:] = _one_sided(up_inc[start:])
        lower[start:] = _one_sided(low_inc[start:])
        if not params.reset_after_alarm:
            break
        signals = np.flatnonzero(
            (upper[start:] > params.limit_kwh) | (lower[start:] > params.limit_kwh)
        )
        if signals.size == 0:
            break
        start += int(signals[0]) + 1
    return CusumSeries(upper, lower, upper > params.limit_kwh, lower > params.limit_kwh)


# Drift rule defaults. Montgomery sec. 9.1.3: choose k as half the shift, in sigmas, that
# is to be caught quickly. A 5 % rise of a busy line's energy per unit is about two
# hourly residual sigmas on lines shaped like the simulator's (bench/drift_detection.py),
# hence k = 1; with h = 5 the one-sided in-control ARL is about 1.1e5 periods (Siegmund's
# approximation, Montgomery eq. 9.5: ARL = (exp(-2 D b) + 2 D b - 1) / (2 D^2), D = -k,
# b = h + 1.166), against about 930 for k = 0.5, h = 5, which over 720 hourly periods
# (30 days) would signal falsely about every other month.
DRIFT_K = 1.0
DRIFT_H = 5.0


def drift_cusum_params(
    baseline: Baseline, periods_per_block: int = 1, k: float = DRIFT_K, h: float = DRIFT_H
) -> CusumParams:
    """CUSUM settings for a line's drift rule: sigma from the baseline's residual spread,
    times ``sqrt(periods_per_block)`` when residuals are summed per shift."""
    if periods_per_block < 1:
        raise ValueError(f"periods_per_block must be >= 1, got {periods_per_block}")
    sigma_kwh = baseline.residual_std_kwh * math.sqrt(periods_per_block)
    return CusumParams(sigma_kwh=sigma_kwh, k=k, h=h)


def arl_siegmund(shift_sigmas: float, k: float, h: float) -> float:
    """Average run length of a one-sided CUSUM for a mean shift of ``shift_sigmas``
    [periods], Siegmund's approximation (Montgomery, SQC 6th ed., eq. 9.5)."""
    delta = shift_sigmas - k
    b = h + 1.166
    if delta == 0.0:
        return b * b
    return (math.exp(-2.0 * delta * b) + 2.0 * delta * b - 1.0) / (2.0 * delta * delta)
