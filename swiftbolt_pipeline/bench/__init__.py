"""`swiftbolt bench`: measured / reference / ratio rows for the pipeline's hot paths, in one run
against its own PostgreSQL, emulator and Dagster instance (see `harness.run_bench`)."""

from .harness import BenchSizes, run_bench
from .report import BenchReport, Row, render_table, write_report

__all__ = ["BenchReport", "BenchSizes", "Row", "render_table", "run_bench", "write_report"]
