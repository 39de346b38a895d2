"""Capture: local snapshots of pg_stat_statements, pushes from remote collectors, and statement structure."""
