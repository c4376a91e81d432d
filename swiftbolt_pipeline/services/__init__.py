"""What the definitions, the CLI and the API share over the database and the Dagster instance
(coverage, ensuring coverage, in-flight runs): plain functions, no Dagster definitions."""
