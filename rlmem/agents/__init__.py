"""Agents that learn on rlmem's env batches."""
