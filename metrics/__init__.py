"""Metrics computed from a rollout's frames, timings and cache statistics."""
