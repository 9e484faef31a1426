"""Decode attention over a paged KV cache, the layout serving engines (vLLM, SGLang, FlashInfer) use.

k_pages, v_pages [num_pages, Hkv, page_size, D]: a pool of fixed-size pages shared by all sequences.
block_table [B, max_pages] (int32): sequence b's token s lives in page block_table[b, s // page_size]
at slot s % page_size. lengths [B]: valid tokens per sequence. Entries of block_table past a
sequence's last page are never read.

Same math, FLOPs and minimum bytes as contiguous attention (plus the page ids). The reference and the
PyTorch implementation gather the pages into a contiguous cache and reuse kernels.attention.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from kernels import attention
from kernels.dtypes import generator, randn
from kernels.op import Inputs


@dataclass(frozen=True)
class PagedAttentionShape:
    batch: int
    heads: int
    kv_heads: int
    head_dim: int
    context: int  # longest sequence; the others are drawn shorter
    page_size: int = 16

    @property
    def pages_per_seq(self) -> int:
        return -(-self.context // self.page_size)


def _contiguous(s: PagedAttentionShape) -> attention.AttentionShape:
    return attention.AttentionShape(s.batch, s.heads, s.kv_heads, s.head_dim, s.context)


def flops(s: PagedAttentionShape) -> int:
    return attention.flops(_contiguous(s))  # an upper bound when lengths < context


def min_bytes(s: PagedAttentionShape, element_bytes: int) -> int:
    return attention.min_bytes(_contiguous(s), element_bytes) + s.batch * s.pages_per_seq * 4


def make_inputs(s: PagedAttentionShape, dtype: torch.dtype, device, seed: int) -> Inputs:
    """Pages shuffled over a pool with spare pages; sequence 0 is full length, the others random."""
    g = generator(seed, device)
    num_pages = s.batch * s.pages_per_seq + 3  # spare pages that no sequence owns
    perm = torch.randperm(num_pages, generator=g, device=device)[: s.batch * s.pages_per_seq]
    lengths = torch.randint(1, s.context + 1, (s.batch,), generator=g, device=device)
    lengths[0] = s.context
    pages_shape = (num_pages, s.kv_heads, s.page_size, s.head_dim)
    return {
        "q": randn((s.batch, s.heads, s.head_dim), dtype, device, g),
        "k_pages": randn(pages_shape, dtype, device, g),
        "v_pages": randn(pages_shape, dtype, device, g),
        "block_table": perm.view(s.batch, s.pages_per_seq).to(torch.int32),
        "lengths": lengths.to(torch.int32),
        "page_size": s.page_size,
    }


def gather_pages(pages: torch.Tensor, block_table: torch.Tensor) -> torch.Tensor:
    """[num_pages, Hkv, P, D] pages -> [B, Hkv, max_pages * P, D] contiguous cache (slots past a
    sequence's length hold whatever its table points at and must be masked by `lengths`)."""
    b, max_pages = block_table.shape
    _, hkv, p, d = pages.shape
    g = pages[block_table.long()]  # [B, max_pages, Hkv, P, D]
    return g.permute(0, 2, 1, 3, 4).reshape(b, hkv, max_pages * p, d)


def reference(q, k_pages, v_pages, block_table, lengths, **_) -> tuple:
    return attention.reference(q, gather_pages(k_pages, block_table), gather_pages(v_pages, block_table),
                               lengths=lengths)


def torch_paged_sdpa(q, k_pages, v_pages, block_table, lengths, **_) -> torch.Tensor:
    """Gather then SDPA: an honest eager baseline (the gather moves the cache once more)."""
    return attention.torch_sdpa(q, gather_pages(k_pages, block_table), gather_pages(v_pages, block_table),
                                lengths=lengths)
