"""How much each layer's quantization alone hurts the model: the sensitivities MSFT and samplers use.

The sensitivity of a layer is the increase of the fine-tuning loss (`FineTuneLoss`) on a fixed,
seeded set of training crops when that layer alone is quantized post-training at a given bit
width and every other layer stays FP32. The loss sees both the classification margin and the
embedding drift from the teacher, and unlike EER it is smooth, so small layers get meaningful,
comparable figures from a few hundred crops.

This is one of the estimators behind `evaluators.sensitivity_estimators` (`loss-increase`, there
measured at every (quantizer, bits) choice a space offers), beside HAWQ's Hessian trace and a
data-free proxy, which the ILP bit allocation and the quality predictor read.
"""

from __future__ import annotations

import torch

from evaluators.finetune_loss import FineTuneLoss
from spaces.compress import ModelSpec, quantizable_layers
from spaces.quant import get_quantizer


@torch.no_grad()
def layer_sensitivities(
    spec: ModelSpec,
    teacher_state: dict[str, torch.Tensor],
    loss: FineTuneLoss,
    crops: torch.Tensor,
    labels: torch.Tensor,
    quantizer: str,
    bits: int,
) -> dict[str, float]:
    """Loss increase per quantizable layer when only that layer is quantized (inference mode).

    Args:
        crops: `[n, frames, bins]` training crops, labels: their speaker indices.
        quantizer, bits: The registered family and width every layer is tried at.

    Returns:
        Layer name -> loss(layer quantized) - loss(FP32), in forward order.
    """
    family = get_quantizer(quantizer)
    model = spec.build()
    model.load_state_dict(teacher_state)
    model.eval()
    teacher_embeddings = model(crops)
    reference = loss(teacher_embeddings, labels, teacher_embeddings).item()
    sensitivities = {}
    for name in quantizable_layers(model):
        weight = model.get_submodule(name).weight
        original = weight.clone()
        weight.copy_(family.fake_quantize(original, bits))
        sensitivities[name] = loss(model(crops), labels, teacher_embeddings).item() - reference
        weight.copy_(original)
    return sensitivities
