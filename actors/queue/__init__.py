"""The queue actor (being built: see issue 10)."""
