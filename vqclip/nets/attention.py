"""Two CPU slow paths of open_clip's ViT, fixed without changing the function: packed self-attention and the patch
embedding as one matmul (see `pack_attention`)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class PackedSelfAttention(nn.MultiheadAttention):
    """nn.MultiheadAttention whose batch-first self-attention runs as one packed projection + SDPA.

    The stock path transposes to [L,N,E] first, so each projection becomes a bmm with the weight copied per token
    (most of a ViT's step time on CPU); this computes the same function with plain matmuls. Other calls
    (masks, weights, cross-attention) go to the stock implementation. Installed per instance by `pack_attention`.
    """

    def forward(self, query, key, value, key_padding_mask=None, need_weights=True, attn_mask=None,
                average_attn_weights=True, is_causal=False):
        if (need_weights or attn_mask is not None or key_padding_mask is not None or is_causal
                or not self.batch_first or query is not key or key is not value or query.dim() != 3
                or not self._qkv_same_embed_dim or self.bias_k is not None or self.add_zero_attn):
            return super().forward(query, key, value, key_padding_mask, need_weights, attn_mask,
                                   average_attn_weights, is_causal)
        n, length, embed = query.shape
        qkv = F.linear(query, self.in_proj_weight, self.in_proj_bias)
        q, k, v = qkv.view(n, length, 3, self.num_heads, embed // self.num_heads).permute(2, 0, 3, 1, 4).unbind(0)
        if query.device.type == "cpu" and not self.training:  # CPU flash kernel: slow for ViT's ~50 tokens
            out = ((q @ k.transpose(-2, -1)) * (q.shape[-1] ** -0.5)).softmax(-1).to(v.dtype) @ v
        else:
            out = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0)
        out = out.transpose(1, 2).reshape(n, length, embed)
        return F.linear(out, self.out_proj.weight, self.out_proj.bias), None


class PatchConv(nn.Conv2d):
    """A ViT patch embedding (kernel == stride, no padding) as one matmul over the patches: same function, but its
    input gradient is a matmul too instead of CPU's slow strided transposed convolution."""

    def forward(self, x: Tensor) -> Tensor:
        kh, kw = self.kernel_size
        b, c, h, w = x.shape
        if (tuple(self.stride) != (kh, kw) or self.padding != (0, 0) or self.dilation != (1, 1) or self.groups != 1
                or h % kh or w % kw or x.device.type != "cpu"):
            return super().forward(x)
        patches = x.reshape(b, c, h // kh, kh, w // kw, kw).permute(0, 2, 4, 1, 3, 5).reshape(b, -1, c * kh * kw)
        out = F.linear(patches, self.weight.reshape(self.out_channels, -1), self.bias)  # [B, h'w', C_out]
        return out.permute(0, 2, 1).reshape(b, self.out_channels, h // kh, w // kw)


def pack_attention(model: nn.Module) -> nn.Module:
    """Switch `model`'s nn.MultiheadAttention to `PackedSelfAttention` and its patch-embedding convolutions to
    `PatchConv`, in place (same weights, same state_dict, same function)."""
    for module in model.modules():
        if type(module) is nn.MultiheadAttention:
            module.__class__ = PackedSelfAttention
        elif type(module) is nn.Conv2d and module.kernel_size == module.stride and module.kernel_size != (1, 1):
            module.__class__ = PatchConv
    return model
