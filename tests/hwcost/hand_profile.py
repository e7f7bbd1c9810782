"""A hand-sized CPU profile: round figures, so expected costs can be checked by hand."""

HAND_CPU = {
    "name": "hand-cpu",
    "clock_ghz": 2.0,
    "cores_used": 1,
    "simd_width_bits": 128,
    "macs_per_cycle": {"fp32": 4, "int8": 8, "lowbit": 8, "lookup": 4, "binary": 64},
    "l1_kb": 32,
    "l2_kb": 1024,
    "dram_bandwidth_gbps": 4.0,
    "per_layer_overhead_us": 10.0,
    "unpack_cycles_per_weight": 0.5,
}
