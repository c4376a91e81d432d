"""The `swiftbolt` command line, thin over defs/, storage/ and ingest/."""
