"""Audit SQL: DuckDB over the archive, the named queries in ``queries/``, result export, discovery helpers."""
