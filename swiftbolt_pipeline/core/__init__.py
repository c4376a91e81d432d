"""Pure domain logic: no Dagster, no I/O beyond reading the exchange calendar."""
