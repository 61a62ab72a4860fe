"""Length units that calibrated scan axes carry, in nanometres."""

from __future__ import annotations

#: Nanometres per unit, for the spellings readers write (Bruker: µm; HyperSpy: nm).
NM_PER_UNIT = {"nm": 1.0, "µm": 1e3, "um": 1e3, "μm": 1e3, "Å": 0.1, "A": 0.1, "pm": 1e-3}


def nm_per_unit(units) -> float | None:
    """Nanometres per ``units``, or None when ``units`` is no known length."""
    return NM_PER_UNIT.get(str(units))
