"""Unit conversions onto the canonical units of a Reading, as (scale, offset): canonical = raw*scale + offset."""

from __future__ import annotations

UNITS: dict[str, dict[str, tuple[float, float]]] = {
    "speed_kmh": {"km/h": (1, 0), "m/s": (3.6, 0), "knots": (1.852, 0), "mph": (1.609344, 0)},
    "heading_deg": {"deg": (1, 0)},
    "fill_pct": {"percent": (1, 0), "ratio": (100, 0)},
    "battery_pct": {"percent": (1, 0), "ratio": (100, 0)},
    "distance_mm": {"mm": (1, 0), "cm": (10, 0), "m": (1000, 0)},
    "temperature_c": {"C": (1, 0), "F": (5 / 9, -160 / 9), "K": (1, -273.15)},
    "battery_v": {"V": (1, 0), "mV": (0.001, 0)},
    "weight_kg": {"kg": (1, 0), "g": (0.001, 0), "t": (1000, 0), "lb": (0.45359237, 0)},
    "lat": {"deg": (1, 0)},
    "lon": {"deg": (1, 0)},
}
