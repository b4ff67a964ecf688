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

Residual model. The efficiency noise of a real line is multiplicative: product mix,
temperature and wear scale the energy drawn, they do not add a constant, so the spread of
``e_i`` grows with the energy of the period (an idle hour's residual is a fraction of a
running hour's). Two models of ``Var(e_i)``:

* ``"absolute"``: constant variance, ordinary least squares, ``s`` in kWh as above; the
  chart runs on ``x_i = actual - expected`` [kWh].
* ``"relative"``: ``Var(e_i)`` proportional to ``E[E_i]^2``. The coefficients are fitted
  by weighted least squares with weights ``w_i = 1 / yhat_i^2``, ``yhat`` from the
  previous pass (an OLS pass, then :data:`WLS_ITERATIONS` reweighted passes: iteratively
  reweighted least squares for a variance that is a function of the mean, Montgomery,
  Peck and Vining, sec. 5.5.2 and 5.5.3), and the spread is that of the relative
  residuals, ``s_rel = sqrt(sum((r_i / yhat_i)^2) / (n - p))`` [share of the expected
  energy]; the chart runs on ``x_i = (actual - expected) / expected`` [-], where a
  period's standardised residual no longer depends on how much the line was running.
  A period whose expected energy is not above :data:`MIN_EXPECTED_SHARE` of the
  baseline's mean expected energy has no relative residual: it is left out of the
  weighted fit and of ``s_rel``, and the chart treats it as missing.

R^2 is in both cases the ordinary ``1 - SSE / SST`` of the fitted model on the energies.

Drift detection: a tabular CUSUM (Montgomery, "Introduction to Statistical Quality
Control", 6th ed., sec. 9.1.2, eqs. 9.2 and 9.3) on the residuals ``x_i`` per period (in
kWh, or as a share of the expected energy), with in-control mean ``mu0 = 0``::

    C+_i = max(0, x_i - (mu0 + K) + C+_{i-1})
    C-_i = max(0, (mu0 - K) - x_i + C-_{i-1})      C+_0 = C-_0 = 0

``K = k * sigma`` and ``H = h * sigma``, ``sigma`` the baseline's residual standard
deviation in the chart's unit (``s`` [kWh], scaled by ``sqrt(m)`` for sums of ``m``
periods, or ``s_rel`` [-]). Montgomery sec. 9.1.3
recommends ``k = 0.5`` (half the one-sigma shift to be detected) with ``h = 4`` or
``h = 5``; those are the defaults of :class:`CusumParams` (``h = 5``: in-control ARL
465 two-sided, about 930 for one side, Table 9.3). A signal is ``C > H``; after a signal
the chart restarts from zero (sec. 9.1.2, after the assignable cause is dealt with).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

MIN_DEGREES_OF_FREEDOM = 2  # n - p: fewer leaves the residual spread meaningless

ResidualModel = Literal["relative", "absolute"]
ChartUnit = Literal["kWh", "share"]
# relative model: an expected energy at or below this share of the baseline's mean
# expected energy has no meaningful relative residual (the period counts as missing).
# Not 1e-6: on a line without a fixed load the fitted intercept is a small noise value
# (1e-3..1 kWh against a 100 kWh mean), so its idle periods' expected energy is tiny but
# positive and their relative residual is about -100 %, which would swamp s_rel.
MIN_EXPECTED_SHARE = 1e-3
# reweighted passes after the OLS pass (weights 1 / yhat^2 from the previous pass); the
# coefficients change by far less than their standard errors after the first
WLS_ITERATIONS = 2


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
        ``sqrt(SSE / (n - p))`` of the fitted model's residuals [kWh per period], whatever
        the residual model (with ``"relative"`` a pooled figure: idle and busy periods
        differ in spread).
    n : int
        Number of periods in the fit.
    residual_model : {"absolute", "relative"}
        How the residual variance was modelled (see the module docstring).
    residual_std_share : float or None
        ``s_rel = sqrt(sum((r_i / yhat_i)^2) / (n' - p))`` [-, share of the expected
        energy] with ``"relative"`` (``n'`` the periods with an expected energy above
        the floor), else None.
    mean_expected_kwh : float
        Mean expected energy over the baseline's periods [kWh per period]; the floor
        below which a relative residual is undefined is :data:`MIN_EXPECTED_SHARE` of it.
    """

    fixed_kwh: float
    kwh_per_unit: float
    extra_coefficients: tuple[float, ...]
    r_squared: float
    residual_std_kwh: float
    n: int
    residual_model: ResidualModel = "absolute"
    residual_std_share: float | None = None
    mean_expected_kwh: float = math.nan

    @property
    def parameters(self) -> int:
        """Fitted coefficients ``p`` (intercept, slope, one per relevant variable)."""
        return 2 + len(self.extra_coefficients)

    @property
    def chart_unit(self) -> ChartUnit:
        """Unit of the residuals the drift CUSUM runs on: kWh, or a share of expected."""
        return "share" if self.residual_model == "relative" else "kWh"

    @property
    def residual_sd(self) -> float:
        """The residual standard deviation in the chart's unit: ``residual_std_share``
        [-] with the relative model, ``residual_std_kwh`` [kWh] with the absolute one."""
        if self.residual_std_share is not None:
            return self.residual_std_share
        return self.residual_std_kwh

    @property
    def min_expected_kwh(self) -> float:
        """Expected energy at or below which a period has no relative residual [kWh]."""
        return MIN_EXPECTED_SHARE * self.mean_expected_kwh


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
    energy_kwh: npt.ArrayLike,
    units: npt.ArrayLike,
    extra: npt.ArrayLike | None = None,
    residual_model: ResidualModel = "absolute",
) -> Baseline:
    """Fit ``E = a + b * U (+ c_k * X_k)`` by ordinary least squares (``"absolute"``) or
    by weighted least squares with weights ``1 / yhat^2`` (``"relative"``).

    Parameters
    ----------
    energy_kwh : array_like, shape (n,)
        Energy of the line per period [kWh]; idle periods included.
    units : array_like, shape (n,)
        Units produced per period [unit].
    extra : array_like, shape (n,) or (n, m), optional
        Relevant variables (ISO 50006 clause 4.2), e.g. outdoor temperature [degC].
    residual_model : {"absolute", "relative"}
        Constant residual variance (OLS), or variance proportional to the expected
        energy squared (WLS, :data:`WLS_ITERATIONS` reweighted passes after OLS; periods
        whose expected energy is at or below :data:`MIN_EXPECTED_SHARE` of the mean get
        no weight).

    Raises
    ------
    ValueError
        NaN or infinite input, mismatched lengths, fewer than ``p + 2`` periods (with
        ``"relative"``: periods with a positive expected energy), no variance in
        ``units`` or in ``energy_kwh``, or relevant variables that are constant or
        collinear with the others (rank-deficient design).

    References
    ----------
    ISO 50006:2014 clause 4.4; Montgomery, Peck and Vining, "Introduction to
    Linear Regression Analysis", 5th ed., sec. 3.2-3.3 (OLS), sec. 5.5 (weighted least
    squares, weights from a variance function of the fitted values).
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
    residual_std_share: float | None = None
    fitted = design @ coefficients
    if residual_model == "relative":
        for _ in range(WLS_ITERATIONS):
            usable = fitted > MIN_EXPECTED_SHARE * abs(float(fitted.mean()))
            if int(usable.sum()) - p < MIN_DEGREES_OF_FREEDOM:
                raise ValueError(
                    f"too few periods with a positive expected energy for the relative "
                    f"residual model: {int(usable.sum())} for {p} coefficients"
                )
            root_w = 1.0 / fitted[usable]  # sqrt of the WLS weight 1 / yhat^2
            coefficients, _, rank, _ = np.linalg.lstsq(
                design[usable] * root_w[:, np.newaxis], energy[usable] * root_w, rcond=None
            )
            if rank < p:
                raise ValueError(
                    f"the weighted design matrix has rank {rank} < {p} on the periods with "
                    "a positive expected energy"
                )
            fitted = design @ coefficients
        usable = fitted > MIN_EXPECTED_SHARE * abs(float(fitted.mean()))
        if int(usable.sum()) - p < MIN_DEGREES_OF_FREEDOM:
            raise ValueError(
                f"too few periods with a positive expected energy for the relative residual "
                f"model: {int(usable.sum())} for {p} coefficients"
            )
        share = (energy[usable] - fitted[usable]) / fitted[usable]
        residual_std_share = math.sqrt(float(share @ share) / (int(usable.sum()) - p))
    elif residual_model != "absolute":
        raise ValueError(f"residual_model must be 'relative' or 'absolute', got {residual_model!r}")
    residuals = energy - fitted
    sse = float(residuals @ residuals)
    return Baseline(
        fixed_kwh=float(coefficients[0]),
        kwh_per_unit=float(coefficients[1]),
        extra_coefficients=tuple(float(c) for c in coefficients[2:]),
        r_squared=1.0 - sse / total_ss,
        residual_std_kwh=math.sqrt(sse / (n - p)),
        n=n,
        residual_model=residual_model,
        residual_std_share=residual_std_share,
        mean_expected_kwh=float(fitted.mean()),
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


def chart_residuals(
    baseline: Baseline,
    energy_kwh: npt.ArrayLike,
    units: npt.ArrayLike,
    extra: npt.ArrayLike | None = None,
) -> FloatArray:
    """The residuals the drift CUSUM runs on, in the baseline's chart unit.

    Absolute model: ``actual - expected`` [kWh]. Relative model: ``(actual - expected) /
    expected`` [-], NaN where the expected energy is at or below
    :attr:`Baseline.min_expected_kwh` (no relative residual: a missing period).
    """
    energy = _as_vector("energy_kwh", energy_kwh)
    want = expected(baseline, units, extra)
    if want.shape != energy.shape:
        raise ValueError(f"energy_kwh and units differ in length: {energy.size} != {want.size}")
    residual: FloatArray = energy - want
    if baseline.residual_model == "absolute":
        return residual
    share: FloatArray = np.full_like(residual, np.nan)
    ok = want > baseline.min_expected_kwh
    share[ok] = residual[ok] / want[ok]
    return share


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

    ``sigma``, ``target``, ``reference`` and ``limit`` are in the unit of the residuals
    charted: kWh with the absolute residual model, a share of the expected energy [-]
    with the relative one.

    Attributes
    ----------
    sigma : float
        Standard deviation of one period's residual [chart unit] (the baseline's
        :attr:`Baseline.residual_sd`; with kWh, times ``sqrt(m)`` for blocks of ``m``
        periods).
    k : float
        Reference value in sigmas; ``K = k * sigma`` [-]. Default 0.5.
    h : float
        Decision interval in sigmas; ``H = h * sigma`` [-]. Default 5.
    target : float
        In-control mean ``mu0`` of the residuals [chart unit]; 0 for an unbiased
        baseline.
    reset_after_alarm : bool
        Restart both sums from zero in the period after a signal.
    """

    sigma: float
    k: float = 0.5
    h: float = 5.0
    target: float = 0.0
    reset_after_alarm: bool = True

    def __post_init__(self) -> None:
        if not (math.isfinite(self.sigma) and self.sigma > 0.0):
            raise ValueError(f"sigma must be finite and > 0, got {self.sigma}")
        if not (math.isfinite(self.k) and self.k >= 0.0):
            raise ValueError(f"k must be finite and >= 0, got {self.k}")
        if not (math.isfinite(self.h) and self.h > 0.0):
            raise ValueError(f"h must be finite and > 0, got {self.h}")

    @property
    def reference(self) -> float:
        """``K`` [chart unit]."""
        return self.k * self.sigma

    @property
    def limit(self) -> float:
        """``H`` [chart unit]."""
        return self.h * self.sigma


@dataclass(frozen=True, slots=True)
class CusumState:
    """The CUSUM after a period: the two sums [chart unit] and whether each exceeds
    ``H``."""

    upper: float = 0.0
    lower: float = 0.0
    upper_alarm: bool = False
    lower_alarm: bool = False

    @property
    def alarm(self) -> bool:
        """Either side signalled in this period."""
        return self.upper_alarm or self.lower_alarm

    def update(self, residual: float, params: CusumParams) -> CusumState:
        """The state after one more period with residual ``residual`` [chart unit]:
        ``actual - expected`` [kWh], or ``(actual - expected) / expected`` [-]."""
        if not math.isfinite(residual):
            raise ValueError(f"residual must be finite, got {residual}")
        upper, lower = self.upper, self.lower
        if params.reset_after_alarm and self.alarm:
            upper = lower = 0.0
        upper = max(0.0, residual - (params.target + params.reference) + upper)
        lower = max(0.0, (params.target - params.reference) - residual + lower)
        return CusumState(upper, lower, upper > params.limit, lower > params.limit)


@dataclass(frozen=True, slots=True)
class CusumSeries:
    """The CUSUM over a series of periods, one entry per period."""

    upper: FloatArray
    lower: FloatArray
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


def cusum_series(residuals: npt.ArrayLike, params: CusumParams) -> CusumSeries:
    """Tabular CUSUM of a whole series at once (vectorised; the same values as folding
    :meth:`CusumState.update` over it, up to rounding).

    With ``reset_after_alarm`` the series is computed segment by segment, one numpy pass
    per signal.
    """
    x = _as_vector("residuals", residuals)
    n = x.size
    up_inc = x - (params.target + params.reference)
    low_inc = (params.target - params.reference) - x
    upper = np.zeros(n)
    lower = np.zeros(n)
    start = 0
    while start < n:
        upper[start:] = _one_sided(up_inc[start:])
        lower[start:] = _one_sided(low_inc[start:])
        if not params.reset_after_alarm:
            break
        signals = np.flatnonzero((upper[start:] > params.limit) | (lower[start:] > params.limit))
        if signals.size == 0:
            break
        start += int(signals[0]) + 1
    return CusumSeries(upper, lower, upper > params.limit, lower > params.limit)


# Drift rule defaults, chosen on the simulated plant (docs/drift.md, bench/drift_plant.py:
# 60 seeds, 3600 line-days without degradation, 120 degraded runs): hourly periods,
# relative residuals, k = 1.5, h = 7 gave no false alert and caught every 5 % rise of the
# energy per unit within 14 h. Montgomery sec. 9.1.3: choose k as half the shift, in
# sigmas, that is to be caught quickly; a 5 % rise is about 2.5-3.5 relative sigmas in a
# running hour of those lines, hence k = 1.5. Siegmund's approximation (Montgomery eq.
# 9.5: ARL = (exp(-2 D b) + 2 D b - 1) / (2 D^2), D = -k, b = h + 1.166) gives an
# in-control ARL of about 1e5 periods already for k = 1, h = 5, but the plant had false
# alerts there (sigma estimated from 168 periods, the idle hours' smaller relative spread
# pooled into it, tails); k + h = 8.5 sigmas removed them, and keeps a 20 % step caught
# in its first hour after a 6-hour baseline (tests/e2e/test_alerts_plant.py), which
# k = 1, h = 10 does not.
DRIFT_K = 1.5
DRIFT_H = 7.0


def drift_cusum_params(
    baseline: Baseline, periods_per_block: int = 1, k: float = DRIFT_K, h: float = DRIFT_H
) -> CusumParams:
    """CUSUM settings for a line's drift rule in the baseline's chart unit: sigma is
    :attr:`Baseline.residual_sd` (kWh, or a share of the expected energy), times
    ``sqrt(periods_per_block)`` when kWh residuals are summed per block of periods.

    Blocks of relative residuals are not defined (fit the baseline on the block sums
    instead, as :class:`~zerocarbon.alerts.drift_monitor.LineDriftMonitor` does):
    ``periods_per_block > 1`` with a relative baseline raises ``ValueError``.
    """
    if periods_per_block < 1:
        raise ValueError(f"periods_per_block must be >= 1, got {periods_per_block}")
    if baseline.residual_model == "relative" and periods_per_block != 1:
        raise ValueError(
            "periods_per_block must be 1 with a relative residual model (fit the baseline "
            "on the block sums)"
        )
    sigma = baseline.residual_sd * math.sqrt(periods_per_block)
    return CusumParams(sigma=sigma, k=k, h=h)


def arl_siegmund(shift_sigmas: float, k: float, h: float) -> float:
    """Average run length of a one-sided CUSUM for a mean shift of ``shift_sigmas``
    [periods], Siegmund's approximation (Montgomery, SQC 6th ed., eq. 9.5)."""
    delta = shift_sigmas - k
    b = h + 1.166
    if delta == 0.0:
        return b * b
    return (math.exp(-2.0 * delta * b) + 2.0 * delta * b - 1.0) / (2.0 * delta * delta)
