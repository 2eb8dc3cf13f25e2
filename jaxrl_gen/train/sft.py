"""The SFT step: `sft_step(state, batch) -> (state, metrics)`, a pure function to jit.

Loss: next-token cross-entropy in fp32 on the tokens `loss_mask` marks (the responses and
their `<|eot_id|>`), averaged over those tokens in the whole global batch. With gradient
accumulation the batch is cut into `accum` micro-batches (each spread over every data shard)
whose summed gradients are divided by the batch's token count once, so the update equals the
one of the whole batch in a single pass.
"""

from __future__ import annotations


import jax
import jax.numpy as jnp
import optax
from flax import nnx

from jaxrl_gen.models.inputs import INPUT_AXES, MODEL_INPUTS
from jaxrl_gen.train.state import TrainState

# Logical axes of each batch array: the model's inputs and the loss mask, rows over the data
# shards.
BATCH_AXES = {**INPUT_AXES, "loss_mask": ("batch", "length")}


def token_losses(graphdef: nnx.GraphDef, params, frozen, rest, batch: dict, chunk: int = 0
                 ) -> tuple[jax.Array, jax.Array, jax.Array]:
  """(sum of masked token losses, number of correct argmax predictions, number of tokens).

  With `chunk` > 0 the LM head and the loss run over `chunk` positions at a time under
  `jax.checkpoint`, so only one chunk's fp32 logits [B, chunk, vocab] are ever live (the
  backward pass recomputes them): at a 128k vocabulary the whole sequence's would be the
  step's largest buffer. The sums are the same either way."""
  model = nnx.merge(graphdef, params, frozen, rest)
  inputs = {k: batch[k] for k in MODEL_INPUTS if k in batch}
  hidden = model(batch["input_ids"], return_hidden=True, logits_to_keep=-1,
                 **inputs).hidden[:, :-1]
  weights = batch["loss_mask"][:, 1:].astype(jnp.float32)
  # Unsupervised positions may hold ids past the LM head (<|image|>); keep them in range.
  targets = jnp.where(weights > 0, batch["input_ids"][:, 1:], 0)

  def sums(h, targets, weights):
    logits = model.logits(h)
    losses = optax.softmax_cross_entropy_with_integer_labels(logits, targets)
    correct = (jnp.argmax(logits, -1) == targets).astype(jnp.float32)
    return jnp.sum(losses * weights), jnp.sum(correct * weights)

  length = hidden.shape[1]
  if not chunk or chunk >= length:
    total, correct = sums(hidden, targets, weights)
    return total, correct, jnp.sum(weights)
  pad = -length % chunk  # padded positions have weight 0
  pieces = [jnp.pad(x, [(0, 0), (0, pad)] + [(0, 0)] * (x.ndim - 2)) for x in
            (hidden, targets, weights)]
  pieces = [jnp.swapaxes(x.reshape(x.shape[0], -1, chunk, *x.shape[2:]), 0, 1) for x in pieces]

  def body(carry, piece):
    return jax.tree.map(jnp.add, carry, jax.checkpoint(sums)(*piece)), None

  (total, correct), _ = jax.lax.scan(body, (0.0, 0.0), tuple(pieces))
  return total, correct, jnp.sum(weights)


def _micro_batches(batch: dict, accum: int) -> dict:
  """[B, ...] -> [accum, B / accum, ...], taking every accum-th row, so each micro-batch has
  rows from every data shard of a batch-sharded array."""
  def split(x):
    if x.shape[0] % accum:
      raise ValueError(f"batch of {x.shape[0]} rows does not split into {accum} micro-batches")
    return jnp.swapaxes(x.reshape(x.shape[0] // accum, accum, *x.shape[1:]), 0, 1)
  return jax.tree.map(split, batch)


def sft_step(state: TrainState, batch: dict, *, graphdef: nnx.GraphDef,
             tx: optax.GradientTransformation, accum: int = 1, loss_chunk: int = 0
             ) -> tuple[TrainState, dict]:
  """One optimizer step on `batch` (arrays [B, ...]); metrics are scalars."""
  def loss_sum(params, micro):
    total, correct, count = token_losses(graphdef, params, state.frozen, state.rest, micro,
                                         loss_chunk)
    return total, (correct, count)

  grad_fn = jax.value_and_grad(loss_sum, has_aux=True)
  if accum == 1:
    (total, (correct, count)), grads = grad_fn(state.params, batch)
  else:
    def body(carry, micro):
      (total, (correct, count)), grads = grad_fn(state.params, micro)
      carry = jax.tree.map(jnp.add, carry, (grads, total, correct, count))
      return carry, None
    zeros = (jax.tree.map(jnp.zeros_like, state.params), 0.0, 0.0, 0.0)
    (grads, total, correct, count), _ = jax.lax.scan(body, zeros, _micro_batches(batch, accum))
  denominator = jnp.maximum(count, 1.0)
  grads = jax.tree.map(lambda g: g / denominator, grads)
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  metrics = {"loss": total / denominator, "accuracy": correct / denominator,
             "loss_tokens": count, "grad_norm": optax.tree.norm(grads),
             "tokens": jnp.sum(batch["attention_mask"]).astype(jnp.float32)}
  return state.replace(step=state.step + 1, params=params, opt_state=opt_state), metrics


def eval_step(state: TrainState, batch: dict, *, graphdef: nnx.GraphDef, loss_chunk: int = 0
              ) -> dict:
  """Summed loss, correct predictions and token count of a batch (no update)."""
  total, correct, count = token_losses(graphdef, state.params, state.frozen, state.rest, batch,
                                       loss_chunk)
  return {"loss_sum": total, "correct": correct, "tokens": count}
