"""Local server compatible with Polygon aggregates, Tradier time & sales and Alpaca bars (no
Dagster)."""

from .app import EmulatorSettings, create_app
from .server import run, running_emulator

__all__ = ["EmulatorSettings", "create_app", "run", "running_emulator"]
