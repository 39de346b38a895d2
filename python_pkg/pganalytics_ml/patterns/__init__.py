"""Workload patterns: cycles, trends, spikes, level shifts and plan changes in the captured history."""
