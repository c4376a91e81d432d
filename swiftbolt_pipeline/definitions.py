"""The Definitions object, nothing else: see defs/ for the pieces."""

import warnings

import dagster as dg

from swiftbolt_pipeline.defs.build import build_definitions

# We rely on backfill policies and pools, which Dagster 1.13 flags as beta on every load.
warnings.filterwarnings("ignore", category=dg.BetaWarning)
warnings.filterwarnings("ignore", category=dg.PreviewWarning)

defs = build_definitions()
