"""The jitted sampler for RL rollouts and evaluation.

    from jaxrl_gen import sampling
    result = sampling.generate(model, [[1, 5, 9], [7, 7]], key=jax.random.key(0),
                               max_new_tokens=64, temperature=0.2, eos_ids=(2,))
    result.tokens, result.lengths, result.logprobs, result.prompt_hidden

Modules: `inputs` (buckets, left padding, images and their cross-attention mask), `sample`
(greedy / temperature / top-k / top-p and the log-prob), `loop` (the compiled prefill +
`lax.while_loop` program), `api` (`generate`, its compile cache, `Result`).
"""

from __future__ import annotations

from jaxrl_gen.sampling.api import Result, generate, kwargs_from_config
from jaxrl_gen.sampling.inputs import BATCH_BUCKETS, PROMPT_BUCKETS, ImageInputs

__all__ = ["BATCH_BUCKETS", "PROMPT_BUCKETS", "ImageInputs", "Result", "generate",
           "kwargs_from_config"]
