"""Partially observable tasks as batched torch envs, and the adapters around them."""
