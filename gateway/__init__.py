"""Wastegate: the telemetry gateway of a municipal waste service."""

__version__ = "0.1.0"
