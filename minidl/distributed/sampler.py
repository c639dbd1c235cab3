"""``DistributedSampler``: which items of a dataset this rank trains on, epoch by epoch.

Every rank shuffles the same way (same seed, same epoch), then takes every
W-th index starting at its rank. With 10 items and 3 ranks::

    permutation     7 2 9 0 4 1 8 3 6 5 | 7 2      <- padded to 12 = 3 x 4 with its own start
    rank 0 gets     7     0     8     5            (positions 0, 3, 6, 9)
    rank 1 gets       2     4     3     7          (positions 1, 4, 7, 10)
    rank 2 gets         9     1     6     2        (positions 2, 5, 8, 11)

So the shards are disjoint apart from the padding, together cover the epoch,
and have equal length -- every rank runs the same number of steps, as the
collectives require. ``drop_last=True`` drops the tail instead of padding
(here to 9 items, 3 each). ``set_epoch(e)`` before each epoch gives a new order.

Use the indices with ``minidl.data.Subset`` and a DataLoader, or slice arrays::

    sampler = DistributedSampler(train_set, seed=0)
    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        loader = DataLoader(Subset(train_set, list(sampler)), batch_size=per_rank_batch)
"""
from __future__ import annotations

import math

import numpy as np

from .process_group import get_rank, get_world_size


class DistributedSampler:
    """Iterates over this rank's indices of ``dataset`` (anything with ``len``) for the current epoch.

    num_replicas, rank: default to the process group's world size and rank.
    shuffle, seed: a permutation from ``numpy.random.default_rng(seed + epoch)``, the same on every rank.
    drop_last: drop the tail so that shards divide evenly, instead of padding with repeated items.
    (PyTorch's rules for sizes and padding; its permutations come from torch's generator, so
    the orders themselves differ.)
    """

    def __init__(self, dataset, num_replicas=None, rank=None, shuffle=True, seed=0, drop_last=False):
        num_replicas = get_world_size() if num_replicas is None else int(num_replicas)
        rank = get_rank() if rank is None else int(rank)
        if num_replicas < 1 or not 0 <= rank < num_replicas:
            raise ValueError(f"DistributedSampler: invalid rank {rank} for num_replicas={num_replicas}")
        self.dataset, self.num_replicas, self.rank = dataset, num_replicas, rank
        self.shuffle, self.seed, self.drop_last, self.epoch = shuffle, int(seed), drop_last, 0
        n = len(dataset)
        if drop_last and n % num_replicas:
            self.num_samples = math.ceil((n - num_replicas) / num_replicas)  # = n // num_replicas
        else:
            self.num_samples = math.ceil(n / num_replicas)
        self.total_size = self.num_samples * num_replicas

    def set_epoch(self, epoch):
        """Call before each epoch: the shuffled order depends on ``seed + epoch``."""
        self.epoch = int(epoch)

    def indices(self):
        """This rank's indices for the current epoch, an int64 array of length ``len(self)``."""
        n = len(self.dataset)
        order = np.random.default_rng(self.seed + self.epoch).permutation(n) if self.shuffle else np.arange(n)
        if self.drop_last:
            order = order[: self.total_size]
        elif self.total_size > n:  # pad with the order's own beginning (repeated if needed)
            order = np.resize(order, self.total_size)
        return order[self.rank : self.total_size : self.num_replicas].astype(np.int64)

    def __iter__(self):
        return iter(self.indices().tolist())

    def __len__(self):
        return self.num_samples

    def __repr__(self):
        return (f"DistributedSampler({len(self.dataset)} items, rank {self.rank} of {self.num_replicas}, "
                f"{self.num_samples} per rank, shuffle={self.shuffle}, seed={self.seed}, epoch={self.epoch})")
