"""The Definitions object, nothing else: see defs/ for the pieces."""

from swiftbolt_pipeline.defs.build import build_definitions

defs = build_definitions()
