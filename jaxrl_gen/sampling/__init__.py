"""The jitted sampler for RL rollouts and evaluation.

    from jaxrl_gen import sampling
    result = sampling.generate(model, [[1, 5, 9], [7, 7]], key=jax.random.key(0),
                               max_new_tokens=64, temperature=0.2, eos_ids=(2,))
    result.tokens, result.lengths, result.logprobs, result.prompt_hidden

Modules: `inputs` (buckets, left padding, images and their cross-attention mask; NumPy
only, so config files can read its defaults), `sample` (greedy / temperature / top-k /
top-p and the log-prob), `loop` (the compiled prefill + `lax.while_loop` program), `hosts`
(what the processes of a multi-process call agree on), `api` (`generate`, its compile
cache, `Result`). JAX loads on first use of the latter.
"""

from __future__ import annotations

import importlib

from jaxrl_gen.sampling.inputs import BATCH_BUCKETS, PROMPT_BUCKETS, ImageInputs

_LAZY = {"Result": "jaxrl_gen.sampling.api", "generate": "jaxrl_gen.sampling.api",
         "kwargs_from_config": "jaxrl_gen.sampling.api"}

__all__ = ["BATCH_BUCKETS", "PROMPT_BUCKETS", "ImageInputs", *_LAZY]


def __getattr__(name: str):
  if name in _LAZY:
    return getattr(importlib.import_module(_LAZY[name]), name)
  raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
