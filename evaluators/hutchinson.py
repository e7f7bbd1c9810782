"""Per-layer Hessian traces by Hutchinson's estimator (HAWQ-V2): `E[v^T H v] = Tr(H)` for Rademacher `v`.

The Hessian of a large model is never formed: each probe draws a random sign vector `v` for
every layer's weight at once, and one Hessian-vector product (a second backward pass through
the gradient, `torch.autograd.grad` with `create_graph`) gives `H v` for all of them. The
products `v_l . (H v)_l` estimate each layer's diagonal block trace `Tr(H_ll)` without bias (the
cross-layer terms average out, as the signs of different layers are independent), so a handful
of probes on a handful of batches is the usual budget.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch


def rademacher_like(tensor: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """A tensor of independent +1 / -1 entries shaped like `tensor`."""
    signs = torch.randint(0, 2, tensor.shape, generator=generator, dtype=torch.int8)
    return signs.to(tensor.dtype).mul_(2).sub_(1)


def hutchinson_traces(
    parameters: Mapping[str, torch.Tensor],
    batch_losses: Sequence[Callable[[], torch.Tensor]],
    probes: int,
    generator: torch.Generator,
) -> dict[str, float]:
    """Estimated trace of each parameter's diagonal Hessian block, averaged over batches and probes.

    Args:
        parameters: Name -> a tensor requiring gradients that the losses depend on.
        batch_losses: One callable per batch computing its scalar loss with a fresh graph.
        probes: Rademacher probes per batch.
        generator: Seeds the probes, so the estimate is reproducible.
    """
    if probes < 1 or not batch_losses:
        raise ValueError(f"need at least one probe and one batch (got {probes} probes, {len(batch_losses)} batches)")
    names = list(parameters)
    tensors = [parameters[name] for name in names]
    totals = dict.fromkeys(names, 0.0)
    for loss_of_batch in batch_losses:
        gradients = torch.autograd.grad(loss_of_batch(), tensors, create_graph=True)
        for probe in range(probes):
            vectors = [rademacher_like(tensor, generator) for tensor in tensors]
            products = torch.autograd.grad(
                gradients, tensors, grad_outputs=vectors, retain_graph=probe + 1 < probes, allow_unused=True
            )
            for name, vector, product in zip(names, vectors, products):
                if product is not None:  # None: the gradient does not depend on the weights (a zero block)
                    totals[name] += float((vector * product).sum())
    samples = probes * len(batch_losses)
    return {name: total / samples for name, total in totals.items()}


__all__ = ["hutchinson_traces", "rademacher_like"]
