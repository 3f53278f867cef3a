"""SDPA attention that keeps grouped-query attention grouped when a verification pass brings a mask.

transformers' `sdpa` attention expands the shared key/value heads to one copy per query head (`repeat_kv`)
whenever more than one query arrives with a mask, which is every verification pass: on a CPU that copies the
whole KV cache twice per layer per pass (a third of what verifying one extra token costs). torch's SDPA takes
grouped heads directly (`enable_gqa`), so only that decision changes; single-token steps, prefills without a
mask, models with extras (soft-capping, position bias) and other devices keep transformers' own path (CUDA's
fused kernels take either grouped heads or a mask, not both, and fall back to the slow math kernel).
"""

from __future__ import annotations

import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

NAME = "specd_sdpa"


def grouped_sdpa_forward(module, query, key, value, attention_mask, dropout: float = 0.0, scaling=None,
                         is_causal=None, **kwargs):
    """transformers' attention function (AttentionInterface, registered as "specd_sdpa"): torch SDPA with
    `enable_gqa=True` for a CPU grouped-query layer given a mask and more than one query, else transformers' own
    `sdpa_attention_forward`. query (batch, heads, q_len, head_dim), key/value (batch, kv_heads, kv_len, head_dim);
    returns (output (batch, q_len, heads, head_dim), None)."""
    grouped = getattr(module, "num_key_value_groups", 1) > 1
    plain = kwargs.get("softcap") is None and kwargs.get("position_bias") is None
    if not (grouped and plain and query.device.type == "cpu" and attention_mask is not None
            and query.shape[2] > 1 and key.shape[-1] == value.shape[-1]):
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      is_causal=is_causal, **kwargs)
    out = torch.nn.functional.scaled_dot_product_attention(
        query, key, value, attn_mask=attention_mask, dropout_p=dropout, scale=scaling, enable_gqa=True)
    return out.transpose(1, 2).contiguous(), None


AttentionInterface.register(NAME, grouped_sdpa_forward)
ALL_MASK_ATTENTION_FUNCTIONS.register(NAME, sdpa_mask)


def use_grouped_sdpa(model) -> bool:
    """Switch a CPU model running transformers' `sdpa` to the grouped variant; False when it does not apply."""
    if model.config._attn_implementation != "sdpa" or model.device.type != "cpu":
        return False
    model.set_attn_implementation(NAME)
    return True
