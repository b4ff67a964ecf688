"""``[[offsets]]`` of the site file: carbon credits (CCER) and allowances (CEA) held.

These are not Scope 2 instruments: green certificates and green-power contracts are
declared in ``[[certificates]]`` and ``[[green_power]]`` and reduce market-based Scope 2;
the credits and allowances here *offset* emissions and are reported separately, after
reductions (GHG Protocol Corporate Standard, 2004, ch. 8 "Accounting for GHG
reductions" and ch. 9 "Reporting": offsets are reported apart from the inventory;
Guiding Opinions on Zero-Carbon Factories, 2026: credits only for residual emissions).
The ledger (:mod:`zerocarbon.accounts.ledger`) records their retirement against periods.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["OffsetConfig", "check_offsets"]


class OffsetConfig(BaseModel):
    """One ``[[offsets]]`` entry: a holding of CCER credits or carbon allowances.

    ``volume_t`` is the holding in t CO2e (1 CCER = 1 t CO2e; 1 CEA = 1 t CO2), under
    the registry ``serial`` (a serial or a serial range as the registry prints it).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_\-]{0,62}$")]
    kind: Literal["ccer", "allowance"]
    serial: Annotated[str, Field(min_length=1, max_length=200)]
    project: str = ""  # CCER project id / name; for allowances the allocation (e.g. "CEA 2025")
    vintage: int = Field(ge=2000, le=2100)  # year of the reduction or of the allocation
    volume_t: float = Field(gt=0, allow_inf_nan=False)  # [t CO2e]
    registry: str = ""  # e.g. "national CCER registry", "national carbon market registry"
    note: str = ""


def check_offsets(offsets: Sequence[OffsetConfig]) -> None:
    """Check ``[[offsets]]`` as a whole: ids and serials are unique.

    ``SiteConfig``'s validator calls it. A serial held twice would let one credit be
    retired twice (GHG Protocol Scope 2 Guidance, 2015, ch. 7: an instrument is claimed
    once), so it is refused here already.

    Raises
    ------
    ValueError
        Naming ``offsets[i]`` and the entry it clashes with.
    """
    ids: dict[str, int] = {}
    serials: dict[str, int] = {}
    for i, entry in enumerate(offsets):
        if entry.id in ids:
            raise ValueError(
                f"offsets[{i}].id: {entry.id!r} already used by offsets[{ids[entry.id]}]"
            )
        ids[entry.id] = i
        serial = entry.serial.strip().upper()
        if serial in serials:
            raise ValueError(
                f"offsets[{i}].serial: {entry.serial!r} is already held as "
                f"offsets[{serials[serial]}] ({offsets[serials[serial]].id}): a serial "
                "can be declared once"
            )
        serials[serial] = i
