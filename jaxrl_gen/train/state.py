"""`TrainState`: everything a training step changes, as one pytree (what orbax saves).

The model is split once into its static `graphdef` (kept outside the state) and three
parameter groups: `params` (trained), `frozen` (parameters whose path matches a freeze
pattern: never updated, so bit-identical after training) and `rest` (any non-parameter
variables). The step merges them back inside the jitted function.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from jaxrl_gen import parallel
from jaxrl_gen.train.ppo import path_name


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class TrainState:
  step: jax.Array  # int32 scalar: optimizer steps taken
  params: nnx.State  # trained parameters
  frozen: nnx.State  # frozen parameters
  rest: nnx.State  # non-parameter variables
  opt_state: Any
  rng: jax.Array  # uint32 key data, for steps that sample

  def replace(self, **changes) -> TrainState:
    return dataclasses.replace(self, **changes)


def freeze_filter(patterns: Sequence[str]):
  """An nnx filter selecting parameters whose dotted path matches any regex (re.search)."""
  compiled = []
  for pattern in patterns:
    try:
      compiled.append(re.compile(pattern))
    except re.error as e:
      raise ValueError(f"freeze pattern {pattern!r} is not a regular expression: {e}") from None
  if not compiled:
    return nnx.Nothing
  return lambda path, value: any(c.search(path_name(path)) for c in compiled)


def split_model(model: nnx.Module, freeze: Sequence[str] = ()) -> tuple[nnx.GraphDef, ...]:
  """(graphdef, params, frozen, rest) of a model."""
  graphdef, frozen, params, rest = nnx.split(
      model, nnx.All(nnx.Param, freeze_filter(freeze)), nnx.Param, ...)
  if freeze and not jax.tree.leaves(frozen):
    raise ValueError(f"freeze patterns {list(freeze)} match no parameter (paths look like "
                     "'vision_model.transformer...', 'multi_modal_projector.kernel')")
  return graphdef, params, frozen, rest


def create(model: nnx.Module, tx: optax.GradientTransformation, *, seed: int,
           freeze: Sequence[str] = ()) -> tuple[nnx.GraphDef, TrainState]:
  """The graphdef and the initial state of training `model` with `tx`."""
  graphdef, params, frozen, rest = split_model(model, freeze)
  state = TrainState(step=jnp.zeros((), jnp.int32), params=params, frozen=frozen, rest=rest,
                     opt_state=tx.init(params),
                     rng=jax.random.key_data(jax.random.key(seed)))
  return graphdef, state


def shardings(state: TrainState, mesh: jax.sharding.Mesh, rules, tx) -> TrainState:
  """NamedShardings of a (possibly abstract) state: parameters and their optimizer moments by
  the logical-axis rules, everything else replicated."""
  replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
  params = parallel.state_shardings(state.params, mesh, rules)
  opt = optax.tree_map_params(tx, lambda _, s: s, state.opt_state, params,
                              transform_non_params=lambda _: replicated,
                              is_leaf=lambda x: isinstance(x, nnx.Variable))
  return TrainState(step=replicated, params=params,
                    frozen=parallel.state_shardings(state.frozen, mesh, rules),
                    rest=jax.tree.map(lambda _: replicated, state.rest), opt_state=opt,
                    rng=replicated)
