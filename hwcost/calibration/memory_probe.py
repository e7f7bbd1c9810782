"""Child process of a peak-memory measurement: `python -m hwcost.calibration.memory_probe MODEL INPUTS`.

Peak memory is what one inference adds to a fresh process (`hwcost.memory`): this process imports
the runtime and loads the inputs (MODEL.onnx, INPUTS.npz), reads its resident-set high-water mark
(VmHWM), creates the session with onnxruntime's default memory settings (CPU arena and memory
pattern on) on one thread, runs `PROBE_RUNS` inferences (the first records the memory pattern,
the next allocates it as one block), reads VmHWM again and prints both as JSON. It imports
nothing of the project beyond this package, so nothing else is in the baseline.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import onnxruntime

PROBE_RUNS = 2
_STATUS = Path("/proc/self/status")


def high_water_mark_bytes() -> int:
    """The process's peak resident set size so far (VmHWM), in bytes."""
    for line in _STATUS.read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"{_STATUS}: no VmHWM line")


def main(argv: list[str]) -> int:
    model_path, inputs_path = argv
    with np.load(inputs_path) as archive:
        feeds = {name: archive[name] for name in archive.files}
    baseline = high_water_mark_bytes()
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(model_path, options, providers=["CPUExecutionProvider"])
    loaded = high_water_mark_bytes()
    for _ in range(PROBE_RUNS):
        session.run(None, feeds)
    print(json.dumps({"baseline_bytes": baseline, "loaded_bytes": loaded, "peak_bytes": high_water_mark_bytes()}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
