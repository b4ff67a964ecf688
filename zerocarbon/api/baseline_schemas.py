"""Response models of ``GET /api/v1/lines/{line}/baseline`` (:mod:`.routes.baseline`):
a line's ISO 50006 energy baseline, its EnPI and the drift CUSUM per period
(:mod:`zerocarbon.alerts.drift_monitor`). Energies per period [kWh], times UTC; the CUSUM
figures are in ``chart_unit``: kWh per period with the absolute residual model, a share
of the expected energy [-] with the relative one (0.05 = 5 %)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True)


class BaselineModel(_Model):
    """``E = fixed_kwh + kwh_per_unit x units + sum(c_k x variable_k)`` per period."""

    fixed_kwh: float = Field(description="Intercept: energy per period at zero output [kWh]")
    kwh_per_unit: float = Field(description="Slope: energy per unit produced [kWh/unit]")
    variables: dict[str, float] = Field(
        description='Coefficient per relevant variable ("device:metric") [kWh per its unit]'
    )
    r_squared: float = Field(description="Coefficient of determination of the fit [-]")
    residual_model: Literal["relative", "absolute"] = Field(
        description="relative: residual spread proportional to the expected energy "
        "(weighted least squares, weights 1 / expected^2); absolute: constant (OLS)"
    )
    chart_unit: Literal["kWh", "share"] = Field(description="Unit of residual_sd and the CUSUM")
    residual_sd: float = Field(
        description="Residual standard deviation per period in chart_unit: [kWh] (absolute) "
        "or a share of the expected energy [-] (relative)"
    )
    residual_sd_kwh: float = Field(
        description="sqrt(SSE / (n - p)) of the fitted model's residuals per period [kWh], "
        "whatever the residual model (with relative, pooled over idle and busy periods)"
    )
    n_periods: int = Field(description="Periods the baseline was fitted on")
    period: Literal["hour", "shift"]
    baseline_start: datetime = Field(description="Start of the first baseline period (UTC)")
    baseline_end: datetime = Field(description="End of the last baseline period (UTC)")


class BaselineEnpi(_Model):
    """Energy per unit over the monitored periods of the series (ISO 50006 clause 4.3)."""

    actual_kwh_per_unit: float
    expected_kwh_per_unit: float
    ratio: float = Field(description="actual / expected [-]: 1.05 is 5 % worse")


class BaselineCusum(_Model):
    """Tabular CUSUM settings (Montgomery, SQC sec. 9.1.2): ``K = k x sd``, ``H = h x sd``."""

    chart_unit: Literal["kWh", "share"] = Field(description="Unit of reference and limit")
    reference: float = Field(description="K [chart_unit per period]")
    limit: float = Field(description="H: a period signals when C+ exceeds it [chart_unit]")
    k: float = Field(description="Reference value [residual sd]")
    h: float = Field(description="Decision limit [residual sd]")


class BaselinePeriod(_Model):
    start: datetime = Field(description="Period start (UTC, inclusive)")
    end: datetime = Field(description="Period end (UTC, exclusive)")
    energy_kwh: float
    units: float
    expected_kwh: float | None = Field(description="None in the baseline period")
    residual_kwh: float | None = Field(description="energy_kwh - expected_kwh")
    residual_share: float | None = Field(
        description="residual_kwh / expected_kwh [-]; None in the baseline period"
    )
    cusum_high: float = Field(description="C+ after the period [chart_unit]")
    cusum_low: float = Field(description="C- after the period [chart_unit]")
    skipped: str | None = Field(
        default=None, description="Why the CUSUM did not take this monitored period"
    )
    signal: bool = Field(description="C+ > H: efficiency drift (the CUSUM restarts after it)")
    in_baseline: bool


class LineBaseline(_Model):
    line: str
    model: BaselineModel
    enpi: BaselineEnpi | None = Field(description="None without monitored output")
    cusum: BaselineCusum
    series: list[BaselinePeriod]
