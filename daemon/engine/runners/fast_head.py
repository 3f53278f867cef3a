"""A faster output projection for CPU fp32 verification passes.

On CPUs, a matrix product with 4 or more rows (the k+1 positions of a verification pass) against the large
vocabulary projection costs 3-4x a single row with MKL's default path, which then repacks the whole weight on
every call. oneDNN with the weight converted once into its own layout does the same product in about half the
time. Up to 3 rows MKL's own path is the faster one (a 2- or 3-token pass ~5% faster in the whole model), so
those stay with it. Only the projection is swapped; the model's own post-processing (soft-capping, scaling)
still runs after it.
"""

from __future__ import annotations

import torch
from torch import nn


MKL_MAX_ROWS = 3


class OneDnnLinear(nn.Module):
    """A drop-in for a CPU fp32 `nn.Linear` output projection: products of more than MKL_MAX_ROWS rows go through oneDNN
    with the weight packed once (`to_mkldnn`), others (and non-float32 or grad-requiring input) through
    `nn.functional.linear`. x (..., in_features) -> (..., out_features)."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.weight = linear.weight  # kept for tied embeddings and get_output_embeddings()
        self.bias = linear.bias
        self._packed = linear.weight.detach().to_mkldnn()
        self._packed_bias = None if linear.bias is None else linear.bias.detach().to_mkldnn()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, self.in_features)
        if x.requires_grad or x.dtype != torch.float32 or rows.shape[0] <= MKL_MAX_ROWS:
            return nn.functional.linear(x, self.weight, self.bias)
        out = torch._C._nn.mkldnn_linear(rows.to_mkldnn(), self._packed, self._packed_bias).to_dense()
        return out.reshape(*x.shape[:-1], self.out_features)


def use_fast_head(model) -> bool:
    """Swap the output projection of a CPU fp32 model for the oneDNN one; False when it does not apply."""
    head = model.get_output_embeddings()
    device = next(model.parameters()).device
    if (not isinstance(head, nn.Linear) or device.type != "cpu" or head.weight.dtype != torch.float32
            or not torch.backends.mkldnn.is_available()):
        return False
    model.set_output_embeddings(OneDnnLinear(head))
    return True
