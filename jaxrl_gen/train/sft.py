"""The SFT step: `sft_step(state, batch) -> (state, metrics)`, a pure function to jit.

Loss: next-token cross-entropy in fp32 on the tokens `loss_mask` marks (the responses and
their `<|eot_id|>`), averaged over those tokens in the whole global batch. With gradient
accumulation the batch is cut into `accum` micro-batches (each spread over every data shard)
whose summed gradients are divided by the batch's token count once, so the update equals the
one of the whole batch in a single pass.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from jaxrl_gen.train.state import TrainState

MODEL_INPUTS = ("attention_mask", "pixel_values", "aspect_ratio_ids", "aspect_ratio_mask",
                "cross_attention_mask")


def token_losses(graphdef: nnx.GraphDef, params, frozen, rest, batch: dict
                 ) -> tuple[jax.Array, jax.Array, jax.Array]:
  """(sum of masked token losses, number of correct argmax predictions, number of tokens)."""
  model = nnx.merge(graphdef, params, frozen, rest)
  inputs = {k: batch[k] for k in MODEL_INPUTS if k in batch}
  logits = model(batch["input_ids"], **inputs).logits[:, :-1].astype(jnp.float32)
  weights = batch["loss_mask"][:, 1:].astype(jnp.float32)
  # Unsupervised positions may hold ids past the LM head (<|image|>); keep them in range.
  targets = jnp.where(weights > 0, batch["input_ids"][:, 1:], 0)
  losses = optax.softmax_cross_entropy_with_integer_labels(logits, targets)
  correct = (jnp.argmax(logits, -1) == targets).astype(jnp.float32)
  return jnp.sum(losses * weights), jnp.sum(correct * weights), jnp.sum(weights)


def _micro_batches(batch: dict, accum: int) -> dict:
  """[B, ...] -> [accum, B / accum, ...], taking every accum-th row, so each micro-batch has
  rows from every data shard of a batch-sharded array."""
  def split(x):
    if x.shape[0] % accum:
      raise ValueError(f"batch of {x.shape[0]} rows does not split into {accum} micro-batches")
    return jnp.swapaxes(x.reshape(x.shape[0] // accum, accum, *x.shape[1:]), 0, 1)
  return jax.tree.map(split, batch)


def sft_step(state: TrainState, batch: dict, *, graphdef: nnx.GraphDef,
             tx: optax.GradientTransformation, accum: int = 1) -> tuple[TrainState, dict]:
  """One optimizer step on `batch` (arrays [B, ...]); metrics are scalars."""
  def loss_sum(params, micro):
    total, correct, count = token_losses(graphdef, params, state.frozen, state.rest, micro)
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


def eval_step(state: TrainState, batch: dict, *, graphdef: nnx.GraphDef) -> dict:
  """Summed loss, correct predictions and token count of a batch (no update)."""
  total, correct, count = token_losses(graphdef, state.params, state.frozen, state.rest, batch)
  return {"loss_sum": total, "correct": correct, "tokens": count}


def jit_steps(graphdef: nnx.GraphDef, tx: optax.GradientTransformation, accum: int,
              state_shardings: Any, batch_shardings: Any):
  """(train step, eval step) jitted with explicit shardings; the train state is donated."""
  train = jax.jit(functools.partial(sft_step, graphdef=graphdef, tx=tx, accum=accum),
                  in_shardings=(state_shardings, batch_shardings),
                  out_shardings=(state_shardings, None), donate_argnums=0)
  evaluate = jax.jit(functools.partial(eval_step, graphdef=graphdef),
                     in_shardings=(state_shardings, batch_shardings))
  return train, evaluate
