"""The tiny verification run the search tests share: corpus, model and teacher small enough for a
Ray search in tens of seconds. With the session's `tiny_cache_dir` its teacher trains once."""

from __future__ import annotations

from pathlib import Path

_TINY = """
name: tiny
seed: 3
cache_dir: {cache}
data: {{train_speakers: 6, test_speakers: 4, utterances_per_speaker: 4, min_seconds: 1.0, max_seconds: 1.5}}
features: {{num_mel_bins: 24}}
model: {{family: resnet, base_width: 4, blocks: [1, 1, 1, 1], embedding_dim: 16}}
teacher: {{steps: 15, batch_size: 8, crop_frames: 80}}
space: {space}
"""


def tiny_config(cache: Path, space: str = "{bits: [2, 4, 8]}", extra: str = "") -> str:
    """The tiny config's YAML with its cache folder, a `space:` block and `extra` YAML lines."""
    return _TINY.format(cache=cache, space=space) + extra
