"""jaxrl_gen: SFT and RL post-training of vision-language models in JAX, and what each does
to generalization."""

from jaxrl_gen import platforms as _platforms

__version__ = "0.1.0"

# Before any submodule imports JAX: on a host without TPUs, JAX must not start libtpu (it
# prints initialisation errors); `jaxrl_gen.platforms` says what is decided and how.
_platforms.configure()
