"""The metric names every task reports beside its quality metrics (size of the stored model, predicted costs)."""

SIZE_METRICS = ("size_bytes", "params", "mean_weight_bits", "compression_ratio")
"""Metrics of the stored model that every task reports."""
COST_METRICS = ("latency_ms", "peak_memory_bytes", "real_time_factor")
"""Cost-model predictions every task reports, unsuffixed for the first target and as `<key>@<target>`."""
PREDICTED_LATENCY = "predicted_latency_ms"
"""The cost model's latency on a measured target (`targets:` entry with `measure: true`), whose
`latency_ms` is the time measured on a node of that kind (`search.measured_latency`)."""

__all__ = ["COST_METRICS", "PREDICTED_LATENCY", "SIZE_METRICS"]
