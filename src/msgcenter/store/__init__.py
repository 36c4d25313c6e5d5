"""Persistence: tables, the database handle, and the named queries (the only code that issues SQL)."""
