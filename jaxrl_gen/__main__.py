"""`python -m jaxrl_gen` is the `jaxrl-gen` command."""

from jaxrl_gen.main import run

run()
