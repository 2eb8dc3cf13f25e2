"""The grain pipeline: records -> conversations -> token ids and loss masks -> padded batches.

    ds = sft_dataset(records, to_conversation, processor, batch_size=16, seed=0, ...)
    it = iterator(ds)                 # a grain DatasetIterator: next(it) is one batch
    state = it.get_state(); it.set_state(state)   # exact resume (orbax saves it)

Order: a global shuffle (a new permutation each epoch), repeat, then this process's share of
the examples (`process_index::process_count`, so hosts never share examples and each reads
only its own), encoding in grain's reader threads, and batching. Every step is a pure function
of the index, so the iterator state is just where it is; restoring it replays the same batches.

A batch is a dict of NumPy arrays, each row one example, right-padded to the smallest bucket
length that fits the longest row (few distinct shapes, hence few compilations):
  input_ids [B, L] int32 (pad: `<|finetune_right_pad_id|>`), attention_mask [B, L] int32,
  loss_mask [B, L] int32 (1 on the tokens to predict: responses and their `<|eot_id|>`),
and with images (`max_images` > 0), padded to `max_images` per row:
  pixel_values [B, I, T, 3, S, S] float32, aspect_ratio_ids [B, I] int32,
  aspect_ratio_mask [B, I, T] int32, cross_attention_mask [B, L, I, T] int32.
Examples longer than `max_length` are cut to it (the loss then covers what is left).
Packing several examples into one row is not implemented: the model attends causally over the
whole row, with no segment ids.
"""

from __future__ import annotations

import bisect
import functools
from typing import Any, Callable, Sequence

import grain
import numpy as np

from jaxrl_gen.envs import core
from jaxrl_gen.text import processor as processor_lib

DEFAULT_BUCKETS = (128, 256, 384, 512, 768, 1024, 1536, 2048, 3072, 4096, 6144, 8192)
TEXT_KEYS = ("input_ids", "attention_mask", "loss_mask")


def buckets_for(max_length: int, buckets: Sequence[int] = DEFAULT_BUCKETS) -> tuple[int, ...]:
  """The bucket lengths up to `max_length`, which is always the last one."""
  if max_length < 2:
    raise ValueError(f"data.max_length={max_length}: must be at least 2")
  return tuple(sorted({b for b in buckets if b < max_length} | {max_length}))


def encode(conversation: core.Conversation, processor: processor_lib.Processor,
           max_length: int, max_images: int, last_only: bool = False) -> dict:
  """One example: ids and loss mask (every answer, or the last), and for images their
  per-example arrays."""
  encoded = processor.encode_sft(conversation, last_only)
  ids, mask = encoded.ids[:max_length], encoded.loss_mask[:max_length]
  example = {"input_ids": ids, "loss_mask": mask.astype(np.int32)}
  if len(encoded.images) > max_images:
    raise ValueError(f"an example has {len(encoded.images)} images; data.max_images="
                     f"{max_images}")
  if encoded.images:
    if processor.ids.image is not None and np.count_nonzero(ids == processor.ids.image) != len(
        encoded.images):
      raise ValueError("an image token was cut off by data.max_length")
    arrays = processor.image_inputs([encoded.images], [ids])
    example.update({k: v[0] for k, v in arrays.items()})
  return example


def collate(examples: Sequence[dict], *, pad_id: int, buckets: Sequence[int], rows: int,
            max_images: int = 0, max_tiles: int = 4, image_size: int = 0) -> dict:
  """Stacks examples into one batch of `rows` rows (missing rows are all padding), padded to
  the smallest bucket that fits."""
  longest = max(len(e["input_ids"]) for e in examples)
  length = buckets[bisect.bisect_left(buckets, longest)]
  batch = {"input_ids": np.full((rows, length), pad_id, np.int32),
           "attention_mask": np.zeros((rows, length), np.int32),
           "loss_mask": np.zeros((rows, length), np.int32)}
  if max_images:
    batch.update(
        pixel_values=np.zeros((rows, max_images, max_tiles, 3, image_size, image_size),
                              np.float32),
        aspect_ratio_ids=np.zeros((rows, max_images), np.int32),
        # transformers marks tile 0 of every (even padding) image valid; do the same.
        aspect_ratio_mask=np.zeros((rows, max_images, max_tiles), np.int32),
        cross_attention_mask=np.zeros((rows, length, max_images, max_tiles), np.int32))
    batch["aspect_ratio_mask"][:, :, 0] = 1
  for row, example in enumerate(examples):
    n = len(example["input_ids"])
    batch["input_ids"][row, :n] = example["input_ids"]
    batch["attention_mask"][row, :n] = 1
    batch["loss_mask"][row, :n] = example["loss_mask"]
    if "pixel_values" in example:
      k = example["pixel_values"].shape[0]
      batch["pixel_values"][row, :k] = example["pixel_values"]
      batch["aspect_ratio_ids"][row, :k] = example["aspect_ratio_ids"]
      batch["aspect_ratio_mask"][row, :k] = example["aspect_ratio_mask"]
      # The mask row of the last text token holds for the padding after it, as HF's does.
      cross = example["cross_attention_mask"]
      batch["cross_attention_mask"][row, :n, :k] = cross
      batch["cross_attention_mask"][row, n:, :k] = cross[-1]
  return batch


def sft_dataset(records: Any, to_conversation: Callable[[Any], core.Conversation],
                processor: processor_lib.Processor, *, batch_size: int, seed: int,
                max_length: int, max_images: int = 0, image_size: int = 0,
                buckets: Sequence[int] = DEFAULT_BUCKETS, shuffle: bool = True,
                num_epochs: int | None = None, process_index: int = 0, process_count: int = 1,
                drop_remainder: bool = True, last_only: bool = False) -> grain.MapDataset:
  """Batches of this process (`batch_size` rows each) from a random-access `records` source.
  `last_only` supervises only each conversation's last answer.

  num_epochs None repeats forever (training runs for a number of steps). With
  drop_remainder False the last, short batch is filled with padding rows (for evaluation).
  """
  if not 0 <= process_index < process_count:
    raise ValueError(f"process_index={process_index} outside 0..{process_count - 1}")
  if max_images and processor.image_size is None:
    raise ValueError("data with images needs a processor with an image processor")
  ds = grain.MapDataset.source(records)
  if len(ds) < process_count:
    raise ValueError(f"{len(ds)} records cannot be shared by {process_count} processes")
  if shuffle:
    ds = ds.shuffle(seed=seed)
  if num_epochs != 1:
    ds = ds.repeat(num_epochs)
  ds = ds[process_index::process_count]
  ds = ds.map(functools.partial(_encode_record, to_conversation=to_conversation,
                                processor=processor, max_length=max_length,
                                max_images=max_images, last_only=last_only))
  collate_fn = functools.partial(
      collate, pad_id=processor.ids.pad, buckets=buckets_for(max_length, buckets),
      rows=batch_size, max_images=max_images, max_tiles=processor.max_tiles,
      image_size=image_size)
  return ds.batch(batch_size, drop_remainder=drop_remainder, batch_fn=collate_fn)


def _encode_record(record, *, to_conversation, processor, max_length, max_images,
                   last_only) -> dict:
  return encode(to_conversation(record), processor, max_length, max_images, last_only)


def iterator(ds: grain.MapDataset, *, threads: int = 2, prefetch: int = 4,
             workers: int = 0) -> grain.DatasetIterator:
  """A checkpointable iterator over the batches: `threads` reader threads encode ahead
  (`threads=0`: in the caller's thread); `workers` > 0 moves the work into that many grain
  worker processes (they need absl flags parsed, as the CLI does)."""
  it_ds = ds.to_iter_dataset(grain.ReadOptions(num_threads=threads, prefetch_buffer_size=prefetch))
  if workers:
    it_ds = it_ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=workers))
  return iter(it_ds)
