"""PostgreSQL: connection, migrations, and the queries the pipeline needs."""
