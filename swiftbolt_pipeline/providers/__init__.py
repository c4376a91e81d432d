"""HTTP clients for market-data providers."""
