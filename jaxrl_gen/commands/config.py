"""`jaxrl-gen config`: every key of a config, with its value and its documentation.

    jaxrl-gen config --config=configs/gp.py:l,rl,tiny
    jaxrl-gen config --config=configs/virl.py:vl --config.env.resolution=336 | grep '^env\.'

One line per key, `key = value  # doc`, with the overrides applied. The documentation is read
from the key tables of the config file's docstring and of `jaxrl_gen.config_lib`'s section
functions (`config_lib.describe`). Nothing is validated or built.
"""

from __future__ import annotations

import ast

from absl import flags
from ml_collections import config_flags

from jaxrl_gen import config_lib


def validate(config) -> None:
  """Listing a config checks nothing: it is how a person finds what to fix."""
  del config


def main(config, workdir: str | None):
  del workdir  # nothing is written
  path = config_flags.get_config_filename(flags.FLAGS["config"]).partition(":")[0]
  with open(path, encoding="utf-8") as f:
    doc = ast.get_docstring(ast.parse(f.read())) or ""
  print("\n".join(config_lib.describe(config, [doc])))
