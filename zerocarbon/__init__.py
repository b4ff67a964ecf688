"""zerocarbon: a real-time digital energy-and-carbon management center for factories."""

from __future__ import annotations

__version__ = "0.1.0"
