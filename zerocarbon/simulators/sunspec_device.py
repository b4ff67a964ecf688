"""A simulated SunSpec device: the profile of a chosen set of models, served by a
:class:`~zerocarbon.simulators.register_bank.RegisterBank`.

The profile comes from :func:`zerocarbon.metering.sunspec.build_profile`, so the device
serves the "SunS" marker at its base address, every model header, model 160's module
count, the end model, the common model's identification strings and fixed scale-factor
exponents as static registers; its values come from the bank's ``update`` like any other
simulated unit's. Discovery and ``zerocarbon devices scan`` are tested against it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from zerocarbon.metering.profile import DeviceProfile
from zerocarbon.metering.sunspec import CommonInfo, build_profile, layout
from zerocarbon.simulators.register_bank import RegisterBank

# Scale-factor exponents served (SunSpec sunssf points): value = raw * 10**sf. Chosen so
# that a few hundred kW and a few hundred MWh fit their registers: W (int16) in 10 W
# steps up to 327 kW, WH (acc32) in Wh up to 4.29 GWh.
DEFAULT_SF_EXPONENTS: dict[str, int] = {
    "V_SF": -1,
    "W_SF": 1,
    "Hz_SF": -2,
    "WH_SF": 0,
    "A_SF": -2,
    "DCA_SF": -2,
    "DCV_SF": -1,
    "DCW_SF": 0,
    "DCWH_SF": 0,
    "WChaMax_SF": 1,
    "ChaState_SF": -1,
    "InBatV_SF": -1,
    "SoC_SF": -1,
    "SoH_SF": 0,
}

# Fill every unmapped run between two served registers (the widest gap in a map of the
# models above is well below a read's 125 registers).
WHOLE_MAP_GAP = 125

DEFAULT_COMMON = CommonInfo("zerocarbon", "SunSpec simulator", "SIM-0001")


def sunspec_device_profile(
    model_ids: Sequence[int],
    *,
    name: str = "sunspec_simulated",
    base_address: int = 40000,
    mppt_modules: int = 2,
    sf_exponents: Mapping[str, int] | None = None,
    common: CommonInfo = DEFAULT_COMMON,
) -> DeviceProfile:
    """The profile of a device with ``model_ids`` at ``base_address`` (model 160 with
    ``mppt_modules`` modules), serving ``sf_exponents`` (default
    :data:`DEFAULT_SF_EXPONENTS`) and ``common``'s strings in model 1."""
    return build_profile(
        layout(model_ids, base_address, mppt_modules),
        name=name,
        common=common,
        sf_exponents=DEFAULT_SF_EXPONENTS if sf_exponents is None else sf_exponents,
        serve_common=True,
    )


def sunspec_register_bank(
    model_ids: Sequence[int],
    *,
    base_address: int = 40000,
    mppt_modules: int = 2,
    values: Mapping[str, float] | None = None,
) -> RegisterBank:
    """A register bank of a SunSpec device (see :func:`sunspec_device_profile`),
    holding ``values`` (metric name -> value) if given. Like a real device it serves
    every register from the marker to the end model (the points it does not model
    read 0), so block reads across a model's unused points succeed."""
    bank = RegisterBank(
        sunspec_device_profile(model_ids, base_address=base_address, mppt_modules=mppt_modules),
        gap_fill_registers=WHOLE_MAP_GAP,
    )
    if values:
        bank.update(values)
    return bank
