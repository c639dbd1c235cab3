"""``DataLoader``: batches from a dataset, optionally shuffled, prepared one step ahead.

    loader = DataLoader(dataset, batch_size=8, shuffle=True, seed=0)
    for images, masks in loader:      # images float32 (8, 3, H, W), masks int64 (8, H, W)
        ...

What it does each epoch (each ``iter(loader)``):
1. draws the order: a fresh permutation from the loader's own generator (seeded once, at
   construction), or 0..N-1 when ``shuffle=False``; cuts it into batches of ``batch_size``
   (the last one shorter, or dropped with ``drop_last=True``);
2. for each batch, fetches ``dataset[i]`` for its indices and hands the list to
   ``collate_fn`` (``default_collate`` stacks arrays into Tensors);
3. with ``prefetch > 0`` (the default), step 2 runs in one background thread that keeps up
   to ``prefetch`` finished batches waiting in a queue, so that while the model trains on
   batch k the next one is being read, cropped and stacked. NumPy and Pillow release the
   GIL in their heavy loops, so the two really overlap. There is exactly one worker thread
   and it walks the batches in order: the batches, and the random draws of the transforms,
   are the same as with ``prefetch=0``.

Reproducibility: the same ``seed`` gives the same sequence of epochs. ``seed=None`` takes a
seed from minidl's CPU generator, so ``minidl.manual_seed(s)`` also makes shuffling repeatable
(as PyTorch's DataLoader follows ``torch.manual_seed``).
"""
from __future__ import annotations

import queue
import threading

import numpy as np

from .. import backend
from .._tensor import Tensor
from ..creation import from_numpy
from ..ops.shape import stack


def default_collate(samples):
    """Stack a list of samples into a batch, keeping the samples' structure.

    - NumPy arrays of equal shape (S...) -> Tensor (N, S...), dtype kept;
    - minidl Tensors -> Tensor (N, S...);
    - Python/NumPy ints -> int64 Tensor (N,), floats -> float32 Tensor (N,), bools -> bool Tensor;
    - tuples/lists -> the same kind of sequence of collated fields; dicts -> dict of collated values.
    So a dataset of (image (3, H, W), mask (H, W)) gives (images (N, 3, H, W), masks (N, H, W)).
    """
    first = samples[0]
    if isinstance(first, (tuple, list)):
        lengths = {len(s) for s in samples}
        if len(lengths) != 1:
            raise ValueError(f"default_collate: samples have different numbers of fields: {sorted(lengths)}")
        return type(first)(default_collate(list(field)) for field in zip(*samples))
    if isinstance(first, dict):
        return {key: default_collate([s[key] for s in samples]) for key in first}
    if isinstance(first, Tensor):
        _check_same_shape([s.shape for s in samples])
        return stack([s.detach() for s in samples])
    if isinstance(first, np.ndarray):
        _check_same_shape([s.shape for s in samples])
        return from_numpy(np.stack(samples))
    if isinstance(first, (bool, np.bool_)):
        return from_numpy(np.array(samples, dtype=np.bool_))
    if isinstance(first, (int, np.integer)):
        return from_numpy(np.array(samples, dtype=np.int64))
    if isinstance(first, (float, np.floating)):
        return from_numpy(np.array(samples, dtype=np.float32))
    raise TypeError(
        f"default_collate: don't know how to batch {type(first).__name__}; "
        "items should be arrays, tensors, numbers, or tuples/lists/dicts of them (or pass collate_fn)"
    )


def _check_same_shape(shapes):
    if len(set(map(tuple, shapes))) != 1:
        raise ValueError(
            f"default_collate: items in a batch have different shapes {sorted(set(map(tuple, shapes)))}; "
            "make them equal with a transform (Resize, RandomCrop) or use batch_size=1"
        )


class DataLoader:
    """Iterate over ``dataset`` in batches.

    dataset: any object with ``__len__`` and ``__getitem__(int)``.
    batch_size: items per batch. shuffle: a new random order every epoch.
    drop_last: drop the last batch when it is smaller than batch_size.
    seed: seeds the shuffling generator (once); None draws it from minidl's generator; a NumPy
        ``Generator`` is used as it is (shared, e.g., with the transforms' draws).
    collate_fn: list of items -> batch; ``default_collate`` by default.
    prefetch: how many batches the background thread may prepare ahead; 0 = no thread,
        batches are made in the caller's thread when asked for.
    """

    def __init__(self, dataset, batch_size=1, shuffle=False, drop_last=False, seed=None, collate_fn=None, prefetch=2):
        self.dataset = dataset
        self.batch_size = _whole_number("batch_size", batch_size, least=1)
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.collate_fn = collate_fn or default_collate
        self.prefetch = _whole_number("prefetch", prefetch, least=0)
        if seed is None:
            seed = int(backend.random_integers(0, 2**62, ()))
        self.seed = seed
        self.generator = np.random.default_rng(seed)
        self._worker = None  # the prefetch thread of the epoch in progress

    def __len__(self):
        """Number of batches per epoch."""
        full, rest = divmod(len(self.dataset), self.batch_size)
        return full if (self.drop_last or rest == 0) else full + 1

    def batch_indices(self):
        """The next epoch's batches, as a list of index arrays (advances the shuffling generator)."""
        n = len(self.dataset)
        order = self.generator.permutation(n) if self.shuffle else np.arange(n)
        return [order[start : start + self.batch_size] for start in range(0, len(self) * self.batch_size, self.batch_size)]

    def _make_batch(self, indices):
        return self.collate_fn([self.dataset[int(i)] for i in indices])

    def __iter__(self):
        # Only one epoch may run at a time: two threads calling the dataset would interleave
        # the transforms' random draws and make the run unrepeatable.
        if self._worker is not None:
            self._worker.close()
        batches = self.batch_indices()
        if self.prefetch == 0:
            return (self._make_batch(indices) for indices in batches)
        self._worker = _Prefetcher(self._make_batch, batches, self.prefetch)
        return iter(self._worker)

    def __repr__(self):
        return (
            f"DataLoader({len(self.dataset)} items, batch_size={self.batch_size}, shuffle={self.shuffle}, "
            f"drop_last={self.drop_last}, prefetch={self.prefetch})"
        )


def _whole_number(name, value, least):
    """``value`` as an int >= ``least``; 2.7, "8" and True are refused (as PyTorch does), not rounded."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < least:
        raise ValueError(f"DataLoader: {name} must be an integer >= {least}, got {value!r}")
    return int(value)


class _Prefetcher:
    """Runs ``make_batch`` over ``batches`` in one background thread, at most ``depth`` batches ahead.

    The thread puts ("batch", value) items into a bounded queue, then ("done", None); an
    exception travels as ("error", exception) and is raised again in the consumer's thread.
    """

    def __init__(self, make_batch, batches, depth):
        self.queue = queue.Queue(maxsize=depth)
        self.stopping = threading.Event()
        self.thread = threading.Thread(
            target=self._work, args=(make_batch, batches), name="minidl-DataLoader-prefetch", daemon=True
        )
        self.thread.start()

    def _work(self, make_batch, batches):
        try:
            for indices in batches:
                if not self._put(("batch", make_batch(indices))):
                    return
        except BaseException as error:  # handed to the consumer, which raises it
            self._put(("error", error))
            return
        self._put(("done", None))

    def _put(self, item):
        """Wait for room in the queue; give up (False) when the consumer has stopped."""
        while not self.stopping.is_set():
            try:
                self.queue.put(item, timeout=0.05)
                return True
            except queue.Full:
                pass
        return False

    def __iter__(self):
        try:
            while True:
                kind, value = self.queue.get()
                if kind == "batch":
                    yield value
                elif kind == "error":
                    raise value
                else:
                    return
        finally:  # normal end, an error, or the consumer leaving the loop early
            self.close()

    def close(self):
        self.stopping.set()
        self.thread.join()
