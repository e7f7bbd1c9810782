"""K-means weight quantization: a learned codebook of `2**bits` values per layer (Liu, Wang, Qian 2024).

Speaker-model weights are heavy-tailed, so evenly spaced levels waste most codes on the sparse tails;
a codebook fitted to the layer's own weights puts the levels where the weights are.

Clustering is 1-D k-means over the sorted weights, whose optimal clusters are contiguous runs:

1. Candidate cluster boundaries are the places where the sorted value changes. Beyond
   `_MAX_BLOCKS` distinct values they are thinned to the first change at or after evenly spaced
   quantiles (where the weights are dense) and evenly spaced values (the sparse tails, where
   k-means wants small clusters).
2. Dynamic programming over those boundaries finds the partition with the least squared error
   (exact optimal k-means when every distinct value is a candidate; divide-and-conquer over the
   monotone split points, vectorised per recursion level).
3. When the boundaries were thinned, Lloyd iterations on all the weights refine the centroids
   (each one a `searchsorted` and prefix-sum lookup, so it never touches the weights one by one).

No randomness is involved, so the result is deterministic. Codes are centroid indices, side data is
`codebook`, float32 `[2**bits]` (sorted), or `[groups, 2**bits]` with per-channel-group codebooks. A
layer (or group) with at most `2**bits` distinct weights keeps them exactly: the codebook is the
sorted distinct values, padded by repeating the last one.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from spaces.quant.base import FakeQuantizer, QatOptions, QuantizationError, QuantizedWeight, Quantizer, check_bits
from spaces.quant.decoding import CodebookLookup

_KMEANS_BITS = (1, 2, 3, 4, 5, 6, 7, 8)
_MAX_BLOCKS = 4096
_LLOYD_ITERATIONS = 100


class KMeansQuantizer(Quantizer):
    """Codebook quantizer fitted by 1-D k-means, per layer or per group of output channels.

    Args:
        groups: Number of contiguous output-channel groups with a codebook each (capped at the
            number of channels); 1 is one codebook per layer.
    """

    allowed_bits = _KMEANS_BITS
    decoding = CodebookLookup()
    table_lookup = True

    def __init__(self, groups: int = 1) -> None:
        if groups < 1:
            raise QuantizationError(f"kmeans quantizer: groups={groups}; expected a positive integer")
        self.groups = groups
        self.name = "kmeans" if groups == 1 else f"kmeans-group{groups}"

    def quantize(self, weight: torch.Tensor, bits: int) -> QuantizedWeight:
        check_bits(self.name, bits, self.allowed_bits)
        channels = weight.detach().cpu().reshape(weight.shape[0], -1).double().numpy()
        group_count = min(self.groups, channels.shape[0])
        group_of_channel = channel_groups(channels.shape[0], group_count)
        codebooks = np.empty((group_count, 2**bits), dtype=np.float32)
        codes = np.empty(channels.shape, dtype=np.uint8)
        for group in range(group_count):
            members = group_of_channel == group
            codebooks[group] = _fit_codebook(channels[members].reshape(-1), 2**bits)
            codes[members] = _nearest_codes(channels[members], codebooks[group])
        side = {"codebook": torch.from_numpy(codebooks[0] if self.groups == 1 else codebooks)}
        return QuantizedWeight(self.name, bits, torch.from_numpy(codes).reshape(weight.shape), side)

    def dequantize(self, quantized: QuantizedWeight) -> torch.Tensor:
        codebooks = quantized.side["codebook"].reshape(-1, 2**quantized.bits)
        codes = quantized.codes.reshape(quantized.codes.shape[0], -1).long()
        group_of_channel = torch.from_numpy(channel_groups(codes.shape[0], codebooks.shape[0]))
        return codebooks[group_of_channel[:, None], codes].reshape(quantized.codes.shape)

    def fake_quantizer(self, bits: int, latent: torch.Tensor, options: QatOptions) -> FakeQuantizer:
        """Centroid fine-tuning (or soft-step, per `options`), starting from this quantizer's codebook for `latent`."""
        from spaces.quant.centroid_qat import CentroidQuantizer  # centroid_qat imports this module

        return CentroidQuantizer(
            self,
            bits,
            latent,
            reassign_every=options.reassign_every,
            soft_step=options.soft_step,
            temperature_start=options.temperature_start,
            temperature_end=options.temperature_end,
        )


def channel_groups(channels: int, groups: int) -> np.ndarray:
    """Group index of each output channel: `groups` contiguous, non-empty, near-equal runs."""
    return np.arange(channels) * groups // channels


def _nearest_codes(values: np.ndarray, codebook: np.ndarray) -> np.ndarray:
    """Index of the nearest entry of a sorted codebook (the lower one on an exact tie)."""
    centroids = codebook.astype(np.float64)
    return np.searchsorted((centroids[:-1] + centroids[1:]) / 2, values, side="left").astype(np.uint8)


def _fit_codebook(values: np.ndarray, size: int) -> np.ndarray:
    """Sorted float32 codebook of `size` entries minimising the squared error of `values`."""
    ordered = np.sort(values)
    starts = np.flatnonzero(np.concatenate([[True], ordered[1:] != ordered[:-1]]))
    if starts.size <= size:
        return _padded(ordered[starts], size)
    thinned = starts.size > _MAX_BLOCKS
    if thinned:
        quantiles = ordered[np.linspace(0, ordered.size, _MAX_BLOCKS // 2, endpoint=False).astype(np.int64)]
        spaced = np.linspace(ordered[0], ordered[-1], _MAX_BLOCKS // 2, endpoint=False)
        starts = np.unique(np.searchsorted(ordered, np.concatenate([quantiles, spaced]), side="left"))
    centre = ordered.mean()
    centred = ordered - centre
    sums = np.concatenate([[0.0], np.cumsum(centred)])
    squares = np.concatenate([[0.0], np.cumsum(centred * centred)])
    boundaries = np.append(starts, ordered.size)
    cuts = boundaries[_optimal_partition(boundaries, sums, squares, min(size, starts.size))]
    if thinned:
        cuts = _lloyd(centred, sums, cuts)
    sizes = np.diff(cuts)
    occupied = sizes > 0
    return _padded((sums[cuts[1:]] - sums[cuts[:-1]])[occupied] / sizes[occupied] + centre, size)


def _padded(centroids: np.ndarray, size: int) -> np.ndarray:
    """Sorted float32 codebook of `size` entries: the centroids, the last one repeated to fill."""
    ordered = np.sort(centroids.astype(np.float32))
    return np.concatenate([ordered, np.full(size - ordered.size, ordered[-1], dtype=np.float32)])


def _optimal_partition(boundaries: np.ndarray, sums: np.ndarray, squares: np.ndarray, clusters: int) -> np.ndarray:
    """Indices into `boundaries` of the least-squared-error split into `clusters` contiguous runs.

    `cost[k][i]` is the least error of the first `i` blocks in `k` clusters; the best last split of
    `cost[k][i]` does not decrease with `i`, which lets each layer be solved by divide and conquer.
    """
    blocks = boundaries.size - 1
    block_counts, block_sums, block_squares = boundaries.astype(np.float64), sums[boundaries], squares[boundaries]

    def error(first: np.ndarray, last: np.ndarray) -> np.ndarray:
        total = block_sums[last] - block_sums[first]
        return block_squares[last] - block_squares[first] - total * total / (block_counts[last] - block_counts[first])

    ends = np.arange(1, blocks + 1)
    cost = np.concatenate([[np.inf], error(np.zeros_like(ends), ends)])
    splits = np.zeros((clusters + 1, blocks + 1), dtype=np.int64)
    for layer in range(2, clusters + 1):
        first_end = layer if layer < clusters else blocks
        cost, splits[layer] = _solve_layer(cost, error, first_end, blocks - (clusters - layer), layer - 1)
    indices = [blocks]
    for layer in range(clusters, 1, -1):
        indices.append(int(splits[layer][indices[-1]]))
    return np.array([0, *reversed(indices)])


def _solve_layer(
    previous: np.ndarray, error: Callable[[np.ndarray, np.ndarray], np.ndarray], low: int, high: int, first_split: int
) -> tuple[np.ndarray, np.ndarray]:
    """`min over j of previous[j] + error(j, i)` for every end `i` in `[low, high]`, and the best `j`.

    Every recursion level of the divide and conquer is evaluated at once: the midpoints of all open
    intervals with their candidate split ranges laid out flat.
    """
    cost = np.full(previous.shape, np.inf)
    best = np.zeros(previous.shape, dtype=np.int64)
    lows, highs = np.array([low]), np.array([high])
    split_lows, split_highs = np.array([first_split]), np.array([high - 1])
    while lows.size:
        middles = (lows + highs) // 2
        counts = np.minimum(split_highs, middles - 1) - split_lows + 1
        offsets = np.cumsum(counts) - counts
        segment = np.repeat(np.arange(middles.size), counts)
        candidates = np.arange(segment.size) - offsets[segment] + split_lows[segment]
        totals = previous[candidates] + error(candidates, middles[segment])
        minima = np.minimum.reduceat(totals, offsets)
        positions = np.where(totals == minima[segment], np.arange(totals.size), totals.size)
        chosen = candidates[np.minimum.reduceat(positions, offsets)]
        cost[middles], best[middles] = minima, chosen
        left, right = lows < middles, middles < highs
        lows = np.concatenate([lows[left], middles[right] + 1])
        highs = np.concatenate([middles[left] - 1, highs[right]])
        split_lows = np.concatenate([split_lows[left], chosen[right]])
        split_highs = np.concatenate([chosen[left], split_highs[right]])
    return cost, best


def _lloyd(centred: np.ndarray, sums: np.ndarray, cuts: np.ndarray) -> np.ndarray:
    """Lloyd iterations on sorted values from an initial partition; returns the final cut positions.

    Assigning to the nearest mean cuts the sorted values at the midpoints between means, and a
    cluster's new mean is a prefix-sum difference, so an iteration costs `O(clusters * log n)`.
    Clusters left empty move to the end as zero-length runs.
    """
    for _ in range(_LLOYD_ITERATIONS):
        sizes = np.diff(cuts)
        means = (sums[cuts[1:]] - sums[cuts[:-1]])[sizes > 0] / sizes[sizes > 0]
        inner = np.searchsorted(centred, (means[:-1] + means[1:]) / 2, side="right")
        updated = np.concatenate([[0], inner, np.full(cuts.size - means.size, centred.size)])
        if np.array_equal(updated, cuts):
            break
        cuts = updated
    return cuts
