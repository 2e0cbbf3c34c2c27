"""A small DPOT-style backbone: patch embedding, Fourier (AFNO-like) or attention mixing, patch decoding.

It shows that the merges are not tied to neuraloperator's classes, and the ablation
``strong_baselines`` trains it with the study's recipe (the CCM study's DPOT experiment).

DPOT (Hao et al., 2024) pre-trains one auto-regressive operator on many PDE data sets:
the input frames are cut into patches, embedded, mixed by Adaptive Fourier Neural
Operator blocks over the patch grid, and decoded back to frames. This module keeps
that shape at toy size, as a plain ``nn.Module`` (no neuraloperator base class), so
that the merge strategies, CCM and the diagnostics can be shown to work on a
non-FNO architecture:

* ``patch_embed``: a strided convolution, one token per ``patch_size``² patch;
* ``blocks``: pre-norm residual blocks; the token mixer is either an AFNO-style
  spectral filter over the patch grid (complex per-mode block-diagonal weights on the
  lowest ``modes`` frequencies, soft-shrinkage as in AFNO) or multi-head
  self-attention, followed by a channel MLP;
* ``decoder``: a transposed convolution back to the frame, plus the input frame when
  ``residual=True`` (a one-step model predicting the increment).

Example
-------
>>> from neuralop_merge.backbones import DPOTLite
>>> model = DPOTLite(in_channels=2, out_channels=2, embed_dim=16, patch_size=4, modes=4)
>>> model(torch.randn(3, 2, 32, 32)).shape
torch.Size([3, 2, 32, 32])
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class AFNOMixer(nn.Module):
    """AFNO-style token mixing: FFT over the patch grid, per-mode block MLP, inverse FFT."""

    def __init__(self, dim: int, modes: int, n_blocks: int = 2, shrink: float = 0.01) -> None:
        super().__init__()
        if dim % n_blocks:
            raise ValueError(f"embed_dim={dim} must be divisible by n_blocks={n_blocks}")
        self.modes, self.n_blocks, self.shrink = modes, n_blocks, shrink
        size = dim // n_blocks
        scale = 1.0 / size
        self.w1 = nn.Parameter(scale * torch.randn(n_blocks, size, size, dtype=torch.cfloat))
        self.b1 = nn.Parameter(torch.zeros(n_blocks, size, dtype=torch.cfloat))
        self.w2 = nn.Parameter(scale * torch.randn(n_blocks, size, size, dtype=torch.cfloat))
        self.b2 = nn.Parameter(torch.zeros(n_blocks, size, dtype=torch.cfloat))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, dim, h, w]
        batch, dim, height, width = x.shape
        spectrum = torch.fft.rfft2(x.float(), norm="ortho")
        kept_h, kept_w = min(self.modes, height), min(self.modes, width // 2 + 1)
        low = spectrum[:, :, :kept_h, :kept_w].reshape(batch, self.n_blocks, dim // self.n_blocks, kept_h, kept_w)
        hidden = torch.einsum("bkihw,kio->bkohw", low, self.w1) + self.b1[..., None, None]
        hidden = torch.complex(F.gelu(hidden.real), F.gelu(hidden.imag))
        mixed = torch.einsum("bkihw,kio->bkohw", hidden, self.w2) + self.b2[..., None, None]
        mixed = torch.complex(F.softshrink(mixed.real, self.shrink), F.softshrink(mixed.imag, self.shrink))
        out = torch.zeros_like(spectrum)
        out[:, :, :kept_h, :kept_w] = mixed.reshape(batch, dim, kept_h, kept_w)
        return torch.fft.irfft2(out, s=(height, width), norm="ortho").to(x.dtype) + x


class AttentionMixer(nn.Module):
    """Multi-head self-attention over the patch tokens."""

    def __init__(self, dim: int, n_heads: int = 2) -> None:
        super().__init__()
        self.attention = nn.MultiheadAttention(dim, n_heads, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, dim, h, w]
        batch, dim, height, width = x.shape
        tokens = x.flatten(2).transpose(1, 2)
        mixed, _ = self.attention(tokens, tokens, tokens, need_weights=False)
        return mixed.transpose(1, 2).reshape(batch, dim, height, width)


class Block(nn.Module):
    """Pre-norm residual block: token mixing, then a channel MLP."""

    def __init__(self, dim: int, mixer: nn.Module, mlp_ratio: int = 2) -> None:
        super().__init__()
        self.norm1, self.norm2 = nn.GroupNorm(1, dim), nn.GroupNorm(1, dim)
        self.mixer = mixer
        self.mlp = nn.Sequential(nn.Conv2d(dim, mlp_ratio * dim, 1), nn.GELU(), nn.Conv2d(mlp_ratio * dim, dim, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.mixer(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class DPOTLite(nn.Module):
    """A toy DPOT: ``[B, in_channels, H, W] -> [B, out_channels, H, W]``, H and W multiples of ``patch_size``.

    Parameters
    ----------
    in_channels, out_channels : int
    embed_dim : int
        token width
    patch_size : int
        side of the square patches
    n_layers : int
        number of mixing blocks
    modes : int
        Fourier modes kept per patch-grid axis (``mixing="afno"``)
    mixing : {"afno", "attention"}
    n_heads : int
        attention heads (``mixing="attention"``)
    residual : bool
        add the input frame to the output (needs ``in_channels == out_channels``)
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 1,
        *,
        embed_dim: int = 16,
        patch_size: int = 4,
        n_layers: int = 2,
        modes: int = 4,
        mixing: str = "afno",
        n_heads: int = 2,
        residual: bool = True,
    ) -> None:
        super().__init__()
        if mixing not in ("afno", "attention"):
            raise ValueError(f"mixing must be 'afno' or 'attention', got {mixing!r}")
        if residual and in_channels != out_channels:
            raise ValueError("residual=True needs in_channels == out_channels")
        self.patch_size, self.residual = patch_size, residual
        self.patch_embed = nn.Conv2d(in_channels, embed_dim, patch_size, stride=patch_size)
        self.blocks = nn.ModuleList(
            Block(embed_dim, AFNOMixer(embed_dim, modes) if mixing == "afno" else AttentionMixer(embed_dim, n_heads))
            for _ in range(n_layers)
        )
        self.norm = nn.GroupNorm(1, embed_dim)
        self.decoder = nn.ConvTranspose2d(embed_dim, out_channels, patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor, **_: object) -> torch.Tensor:
        # Other keywords are ignored, as neuraloperator's models do: its Trainer passes the whole
        # sample (``x`` and ``y``) to the model.
        height, width = x.shape[-2:]
        if height % self.patch_size or width % self.patch_size:
            raise ValueError(f"frame {height}x{width} is not a multiple of patch_size={self.patch_size}")
        tokens = self.patch_embed(x)
        for block in self.blocks:
            tokens = block(tokens)
        out = self.decoder(self.norm(tokens))
        return out + x if self.residual else out


__all__ = ["AFNOMixer", "AttentionMixer", "Block", "DPOTLite"]
