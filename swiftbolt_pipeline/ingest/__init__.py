"""Plain functions that move bars between providers and storage; Dagster assets call these."""
