"""The metric names every task reports beside its quality metrics (size of the stored model, predicted costs)."""

SIZE_METRICS = ("size_bytes", "params", "mean_weight_bits", "compression_ratio")
"""Metrics of the stored model that every task reports."""
COST_METRICS = ("latency_ms", "peak_memory_bytes", "real_time_factor")
"""Cost-model predictions every task reports, unsuffixed for the first target and as `<key>@<target>`."""

__all__ = ["COST_METRICS", "SIZE_METRICS"]
