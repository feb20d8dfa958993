"""Endless, seeded mini-batch streams: batch k is a function of (seed, stream, k), so resume is exact."""
from __future__ import annotations

import torch


class BatchStream:
    """An endless stream of shuffled mini-batches; batch ``k`` depends only on (seed, stream, k).

    That makes resuming exact: restoring the step counter restores the data order.
    """

    def __init__(self, n: int, batch_size: int, seed: int, stream: int) -> None:
        self.n, self.seed, self.stream = n, seed, stream
        self.batch_size = min(batch_size, n)
        self.per_pass = max(1, n // self.batch_size)
        self._pass, self._perm = -1, torch.empty(0, dtype=torch.long)

    def indices(self, k: int) -> torch.Tensor:
        p, i = divmod(k, self.per_pass)
        if p != self._pass:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.stream * 7_919 + p)
            self._pass, self._perm = p, torch.randperm(self.n, generator=g)
        return self._perm[i * self.batch_size:(i + 1) * self.batch_size]
