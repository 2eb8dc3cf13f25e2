"""The rollout batch: what a rollout hands the learner, one row per transition (a generation),
each field with its logical axes beside it.

    batch = RolloutBatch(input_ids=..., attention_mask=..., output_ids=..., ...)   # host arrays
    batch = batch.replace(old_logp=..., advantages=...)        # filled in by the scoring passes
    device = batch.to_global(mesh, rules)    # every process's rows, sharded over the data

Rows are [prompt left-padded to P; output right-padded to L] (`rollout.sequences`); output token
j sits at position P + j. Fields are None until set, and stay None when a run has no use for
them (images on a text task, the reference log-probs without a KL term, values without a
critic); a field that is None is absent from the pytree, so jitted steps are built for the
fields a run fills (`RolloutBatch.abstract`).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import numpy as np
from flax import struct

from jaxrl_gen import parallel
from jaxrl_gen.models.inputs import IMAGE_KEYS, INPUT_AXES

_ROW = ("batch",)
_TOKENS = ("batch", None)  # per output token


def _field(axes: tuple, dtype, *, shape: str = "row"):
  """A batch field (None until set): its logical axes, dtype and which shape it has ('row'
  [N], 'tokens' [N, L], 'sequence' [N, P + L], or 'image': an image array's own)."""
  return dataclasses.field(default=None, metadata={"axes": axes, "dtype": dtype, "shape": shape})


@struct.dataclass
class RolloutBatch:
  """One row per transition; see the module docstring."""

  # The model's inputs over [prompt; output].
  input_ids: Any = _field(INPUT_AXES["input_ids"], np.int32, shape="sequence")
  attention_mask: Any = _field(INPUT_AXES["attention_mask"], np.int32, shape="sequence")
  # The output tokens [N, L] (the teacher-forced targets) and which of them are scored.
  output_ids: Any = _field(_TOKENS, np.int32, shape="tokens")
  thought_mask: Any = _field(_TOKENS, np.float32, shape="tokens")
  action_mask: Any = _field(_TOKENS, np.float32, shape="tokens")
  constant_logp: Any = _field(_ROW, bool)  # legacy rule: too short to split, not scored
  valid: Any = _field(_ROW, bool)          # False: a padding row
  # Images (GP-VL, V-IRL-VL), in the compute dtype.
  pixel_values: Any = _field(INPUT_AXES["pixel_values"], None, shape="image")
  aspect_ratio_ids: Any = _field(INPUT_AXES["aspect_ratio_ids"], np.int32, shape="image")
  aspect_ratio_mask: Any = _field(INPUT_AXES["aspect_ratio_mask"], np.int32, shape="image")
  cross_attention_mask: Any = _field(INPUT_AXES["cross_attention_mask"], np.int32,
                                     shape="image")
  # The scoring passes: the rollout policy's sequence and token log-probs, the critic's value,
  # the frozen reference model's token log-probs (KL term).
  old_logp: Any = _field(_ROW, np.float32)
  old_token_logp: Any = _field(_TOKENS, np.float32, shape="tokens")
  old_value: Any = _field(_ROW, np.float32)
  ref_token_logp: Any = _field(_TOKENS, np.float32, shape="tokens")
  # The learning signal: per-row advantage (every token of a row shares it) and value target.
  advantages: Any = _field(_ROW, np.float32)
  returns: Any = _field(_ROW, np.float32)

  def __getitem__(self, name: str):
    """`batch[name]`, as the pure losses read a batch (a RolloutBatch or any mapping)."""
    value = getattr(self, name, None) if name in _FIELDS else None
    if value is None:
      raise KeyError(name)
    return value

  def __contains__(self, name: str) -> bool:
    return name in _FIELDS and getattr(self, name) is not None

  @classmethod
  def names(cls) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls))

  @classmethod
  def axes_of(cls, name: str) -> tuple:
    return _FIELDS[name].metadata["axes"]

  @property
  def rows(self) -> int:
    return int(np.shape(self.input_ids)[0])

  @property
  def has_images(self) -> bool:
    return self.pixel_values is not None

  def arrays(self) -> dict[str, Any]:
    """The fields that are set, by name."""
    return {k: getattr(self, k) for k in self.names() if getattr(self, k) is not None}

  def model_inputs(self) -> dict[str, Any]:
    """What the model reads besides `input_ids` (the mask and any images)."""
    return {k: v for k, v in self.arrays().items()
            if k == "attention_mask" or k in IMAGE_KEYS}

  def only(self, names) -> RolloutBatch:
    """This batch with just the fields `names` (those a step reads) set."""
    names = set(names)
    return dataclasses.replace(self, **{k: None for k in self.names() if k not in names})

  def take(self, index) -> RolloutBatch:
    """Rows `index` (a slice or indices) of every set field (host arrays)."""
    return jax.tree.map(lambda x: np.asarray(x)[index], self)

  def pad_rows(self, multiple: int) -> RolloutBatch:
    """Rows padded (with copies of the first row, marked not `valid` when the batch carries
    `valid`) to a multiple of `multiple`."""
    pad = -self.rows % multiple
    if not pad:
      return self
    padded = jax.tree.map(lambda x: np.concatenate([x, np.repeat(np.asarray(x)[:1], pad, 0)]),
                          self)
    if self.valid is None:
      return padded
    return padded.replace(valid=np.concatenate([np.asarray(self.valid), np.zeros(pad, bool)]))

  def to_global(self, mesh, rules) -> RolloutBatch:
    """Every process's rows as one global batch (rows over the data shards)."""
    arrays = self.arrays()
    placed = parallel.global_batch(arrays, mesh, rules, {k: self.axes_of(k) for k in arrays})
    return self.replace(**placed)

  def shardings(self, mesh, rules) -> RolloutBatch:
    """NamedShardings of the set fields, by their logical axes."""
    return dataclasses.replace(self, **{
        k: jax.sharding.NamedSharding(mesh, parallel.logical_to_spec(self.axes_of(k), rules))
        for k in self.arrays()})

  @classmethod
  def abstract(cls, names, *, rows: int, prompt: int, output: int,
               image_shapes: Callable[[int, int], dict] | None = None) -> RolloutBatch:
    """ShapeDtypeStructs of the fields `names` for `rows` rows of `prompt` + `output` tokens;
    `image_shapes(rows, length)` gives the image arrays' (shape, dtype)."""
    sizes = {"row": (rows,), "tokens": (rows, output), "sequence": (rows, prompt + output)}
    images = image_shapes(rows, prompt + output) if image_shapes else {}
    fields = {}
    for name in names:
      meta = _FIELDS[name].metadata
      if meta["shape"] in sizes:
        fields[name] = jax.ShapeDtypeStruct(sizes[meta["shape"]], meta["dtype"])
      else:
        shape, dtype = images[name]
        fields[name] = jax.ShapeDtypeStruct(shape, dtype)
    return cls(**{k: fields.get(k) for k in cls.names()})


_FIELDS = {f.name: f for f in dataclasses.fields(RolloutBatch)}
# The fields a rollout fills before scoring.
SEQUENCE_FIELDS = ("input_ids", "attention_mask", "output_ids", "thought_mask", "action_mask",
                   "constant_logp", "valid")
