"""Frozen-prefix cache: the prefix's outputs are computed once and reused every epoch.

Plain ``requires_grad=False`` already stops backward at the frozen prefix; what it cannot avoid
is the prefix's *forward* on every step. When the embeddings and blocks 0..d-1 are frozen (and
run in eval mode, so they are deterministic), their output for an example never changes: we
run them once per example under ``no_grad`` and store the hidden states at boundary d (real
tokens only, no padding), in RAM up to a limit and the rest in a disk memmap.

Training then starts the forward at block d with :func:`start_at`, which swaps the model's block
list for ``[inject, blocks[d:]...]`` for the duration of one call. Everything else — attention
masks, position ids, rotary embeddings, token types — is still computed by the model's own
forward, so the suffix sees exactly what it would see in an uncached forward. (The embeddings
run too, but they are a lookup: negligible next to the blocks.)
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import tempfile
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from freezetune.core.layout import LayerMap
from freezetune.core.memory import TRIM_EVERY, release_free_memory
from freezetune.training.boundaries import boundary_states, up_to_deepest

log = logging.getLogger("freezetune")

STORAGE_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


class _Inject(nn.Module):
    """Stands in for blocks 0..d-1: ignores its input and returns the cached boundary states.

    Models read per-block attributes while looping (Qwen2's ``attention_type``), so unknown
    attributes are answered by a real block.
    """

    def __init__(self, hidden: torch.Tensor, stand_in: nn.Module):
        super().__init__()
        self.hidden = hidden
        object.__setattr__(self, "_stand_in", stand_in)  # not registered: no duplicate parameters

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(object.__getattribute__(self, "_stand_in"), name)

    def forward(self, hidden_states, *args, **kwargs):
        return self.hidden.to(hidden_states.dtype)


@contextlib.contextmanager
def start_at(layers: LayerMap, depth: int, hidden: torch.Tensor):
    """Within this context the model's forward runs blocks ``depth..L-1`` on ``hidden``.

    The view is never longer than the real list (Llama slices it to ``num_hidden_layers``);
    at depth 0 the boundary states are the embeddings' own output, so nothing is swapped.
    """
    if depth == 0:
        yield
        return
    parent_path, _, attr = layers.block_path.rpartition(".")
    parent = layers.model.get_submodule(parent_path) if parent_path else layers.model
    blocks = parent._modules[attr]
    view = nn.ModuleList([_Inject(hidden, blocks[depth - 1]), *list(blocks)[depth:]])
    parent._modules[attr] = view  # bypasses __setattr__: the real list comes back in `finally`
    try:
        yield
    finally:
        parent._modules[attr] = blocks


@dataclass(frozen=True)
class CacheKey:
    """What the cached states depend on; a changed key means a stale cache."""

    prefix: str  # hash of the frozen prefix's weights
    depth: int
    data: str  # hash of the token ids (and types) of the examples
    tokenizer: str
    dtype: str = "fp32"  # storage type
    shard: str = ""  # "rank/world" when the cache holds one rank's examples only (data parallelism)

    def digest(self) -> str:
        text = f"{self.prefix}|{self.depth}|{self.data}|{self.tokenizer}|{self.dtype}|{self.shard}"
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def prefix_fingerprint(layers: LayerMap, depth: int) -> str:
    """Hash of the weights that produce the boundary states (embeddings + blocks < depth)."""
    digest = hashlib.sha256()
    units = ["embeddings"] + [f"block.{i}" for i in range(depth)]
    for unit in units:
        for name, param in layers.parameters(unit):
            digest.update(name.encode())
            digest.update(param.detach().float().cpu().numpy().tobytes())
    return digest.hexdigest()[:16]


def data_fingerprint(dataset) -> str:
    digest = hashlib.sha256()
    for column in ("input_ids", "token_type_ids"):
        if column in dataset.column_names:
            for row in dataset[column]:
                digest.update(np.asarray(row, dtype=np.int64).tobytes())
    return digest.hexdigest()[:16]


class PrefixCache:
    """Boundary states of every example of one dataset, stored flat (real tokens only).

    The first rows that fit ``ram_limit_bytes`` live in RAM; the rest, if any, in a memmap in
    ``directory`` (default: the system's temporary folder), deleted with the cache.
    """

    def __init__(self, key: CacheKey, lengths: list[int], hidden_size: int, *, dtype: str = "fp32",
                 ram_limit_bytes: int = 4 * 2**30, directory: str | None = None):
        self.key = key
        self.depth = key.depth
        self.lengths = torch.tensor(lengths)
        self.offsets = torch.zeros(len(lengths) + 1, dtype=torch.long)
        self.offsets[1:] = torch.cumsum(self.lengths, 0)
        self.dtype = STORAGE_DTYPES[dtype]
        rows = int(self.offsets[-1])
        row_bytes = hidden_size * torch.finfo(self.dtype).bits // 8
        self.bytes = rows * row_bytes
        self.ram_rows = min(rows, max(0, ram_limit_bytes) // row_bytes)
        self.ram_bytes = self.ram_rows * row_bytes
        self.ram = torch.empty(self.ram_rows, hidden_size, dtype=self.dtype)
        self.disk: torch.Tensor | None = None
        if rows > self.ram_rows:
            # numpy has no bfloat16: the file holds the raw 16 or 32 bits, viewed in the storage type.
            np_dtype = np.float32 if self.dtype == torch.float32 else np.int16
            self._file = tempfile.NamedTemporaryFile(prefix="freezetune-cache-", suffix=".bin", dir=directory)
            memmap = np.memmap(self._file.name, dtype=np_dtype, mode="w+", shape=(rows - self.ram_rows, hidden_size))
            self.disk = torch.from_numpy(memmap).view(self.dtype)

    @property
    def on_disk(self) -> bool:
        """Whether part of the cache spilled past the RAM limit to disk."""
        return self.disk is not None

    @property
    def states(self) -> torch.Tensor:
        """Every stored row, RAM part then disk part (a copy when the cache is split)."""
        return self.ram if self.disk is None else torch.cat([self.ram, self.disk])

    def _write(self, start: int, end: int, values: torch.Tensor) -> None:
        split = self.ram_rows
        if start < split:
            self.ram[start:min(end, split)] = values[:min(end, split) - start]
        if end > split:
            self.disk[max(start, split) - split:end - split] = values[max(start, split) - start:]

    def _read(self, start: int, end: int) -> torch.Tensor:
        split = self.ram_rows
        if end <= split:
            return self.ram[start:end]
        if start >= split:
            return self.disk[start - split:end - split]
        return torch.cat([self.ram[start:], self.disk[:end - split]])  # an example astride the two parts

    def store(self, indices: torch.Tensor, hidden: torch.Tensor, mask: torch.Tensor) -> None:
        for row, index in enumerate(indices.tolist()):
            start, end = int(self.offsets[index]), int(self.offsets[index + 1])
            self._write(start, end, hidden[row, mask[row].bool()].to(self.dtype).cpu())

    def fetch(self, indices: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Padded ``[batch, width, hidden]`` states for a batch whose attention mask is ``mask``."""
        batch, width = mask.shape
        out = torch.zeros(batch, width, self.ram.size(1), dtype=torch.float32)
        for row, index in enumerate(indices.tolist()):
            start, end = int(self.offsets[index]), int(self.offsets[index + 1])
            out[row, mask[row].bool().cpu()] = self._read(start, end).float()
        return out


def build_cache(
    layers: LayerMap,
    depth: int,
    loader,
    lengths: list[int],
    key: CacheKey,
    *,
    device: torch.device,
    dtype: str = "fp32",
    ram_limit_bytes: int = 4 * 2**30,
    autocast_dtype: torch.dtype | None = None,
    source: PrefixCache | None = None,
    directory: str | None = None,
) -> PrefixCache:
    """Run embeddings + blocks 0..depth-1 once over ``loader`` (batches carry ``index``).

    With ``source`` (a cache at a lower boundary) only blocks ``source.depth..depth-1`` run.
    """
    return build_caches(layers, {depth: key}, loader, lengths, device=device, dtype=dtype,
                        ram_limit_bytes=ram_limit_bytes, autocast_dtype=autocast_dtype, source=source,
                        directory=directory)[depth]


def build_caches(
    layers: LayerMap,
    keys: dict[int, CacheKey],
    loader,
    lengths: list[int],
    *,
    device: torch.device,
    dtype: str = "fp32",
    ram_limit_bytes: int = 4 * 2**30,
    autocast_dtype: torch.dtype | None = None,
    source: PrefixCache | None = None,
    directory: str | None = None,
) -> dict[int, PrefixCache]:
    """Every boundary in ``keys`` in one pass: one forward per batch, a capture at each boundary.

    The forward stops at the highest boundary. With ``source`` it starts at that lower boundary
    from its stored states (the advance of a cache through the blocks between, alone). RAM is
    shared: what does not fit what the earlier caches left spills to a memmap in ``directory``.
    """
    model = layers.model
    depths = sorted(keys)
    if source is not None and source.depth >= depths[0]:
        raise ValueError(f"a cache at boundary {source.depth} cannot be advanced to boundary {depths[0]}")
    caches: dict[int, PrefixCache] = {}
    for d in depths:
        in_ram = sum(c.ram_bytes for c in caches.values())
        caches[d] = PrefixCache(keys[d], lengths, model.config.hidden_size, dtype=dtype,
                                ram_limit_bytes=max(0, ram_limit_bytes - in_ram), directory=directory)
    modes = {module: module.training for module in model.modules()}  # a frozen prefix may be in eval mode
    model.eval()
    try:
        with torch.no_grad(), boundary_states(layers.blocks, depths) as captured:
            for number, batch in enumerate(loader, 1):
                if number % TRIM_EVERY == 0:
                    release_free_memory()  # the previous batches' activations, freed but held by the C heap
                indices = batch.pop("index")
                batch.pop("labels", None)
                batch = {k: v.to(device) for k, v in batch.items()}
                captured.clear()
                start = (start_at(layers, source.depth, source.fetch(indices, batch["attention_mask"]).to(device))
                         if source is not None else contextlib.nullcontext())
                with start, torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
                    up_to_deepest(lambda: model(**batch))
                for d in depths:
                    caches[d].store(indices, captured[d].float(), batch["attention_mask"])
    finally:
        for module, training in modes.items():
            module.training = training
    release_free_memory()  # the pass's activation buffers, freed but still held by the C heap
    return caches


class CacheStore:
    """Caches kept across runs: a sweep owns one and hands it to each of its runs.

    Looked up by the full key, so a cache is reused only for the same prefix weights, boundary,
    examples, tokenizer and storage type; the oldest are dropped beyond the size limit. A
    Finetuner given no store makes its own, so nothing is shared behind anyone's back.
    """

    def __init__(self) -> None:
        self._caches: dict[str, PrefixCache] = {}

    def get(self, key: CacheKey) -> PrefixCache | None:
        return self._caches.get(key.digest())

    def put(self, cache: PrefixCache, *, limit_bytes: int) -> None:
        self._caches[cache.key.digest()] = cache
        # RAM is what the cap limits: a cache's disk part costs none of it
        while sum(c.ram_bytes for c in self._caches.values()) > limit_bytes and len(self._caches) > 1:
            del self._caches[next(iter(self._caches))]

    def clear(self) -> None:
        self._caches.clear()

