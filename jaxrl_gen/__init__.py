"""jaxrl_gen: SFT and RL post-training of vision-language models in JAX, and what each does
to generalization."""

__version__ = "0.1.0"
