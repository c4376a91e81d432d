"""The HTTP API for chart apps, served by `swiftbolt serve`."""

from swiftbolt_pipeline.api.app import MAX_BARS_SPAN, create_app
from swiftbolt_pipeline.api.latency import LatencyReport, measure_api_latency

__all__ = ["MAX_BARS_SPAN", "LatencyReport", "create_app", "measure_api_latency"]
