"""The HTTP API for chart apps, served by `swiftbolt serve`."""

from swiftbolt_pipeline.api.app import MAX_BARS_SPAN, create_app

__all__ = ["MAX_BARS_SPAN", "create_app"]
