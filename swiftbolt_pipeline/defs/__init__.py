"""Dagster wiring: partitions, resources, assets, checks, sensors, schedules — thin over the
plain functions in core/, providers/, storage/, ingest/ and services/."""
