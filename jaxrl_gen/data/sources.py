"""The SFT data a config names: expert data generated from its environment, or LLaVA JSON.

    config.data.source = 'env'    TFDS expert data of config.task / config.env (prepared once
                                  into data.dir, then read from disk)
    config.data.source = 'llava'  data.llava_json (+ data.llava_eval_json), images under
                                  data.image_root
"""

from __future__ import annotations

import dataclasses
import functools
import os
from typing import Any, Callable

from jaxrl_gen import config_lib
from jaxrl_gen.data import expert_tfds, llava
from jaxrl_gen.envs import core

SOURCES = ("env", "llava")


@dataclasses.dataclass(frozen=True)
class Sources:
  train: Any  # random-access records (len, getitem)
  test: Any | None
  to_conversation: Callable[[Any], core.Conversation]
  has_images: bool
  last_only: bool  # supervise only each conversation's last answer


def data_dir(config, workdir: str | None) -> str:
  """Where TFDS data live: data.dir, else <workdir>/data."""
  if config.data.dir:
    return os.path.expanduser(config.data.dir)
  if not workdir:
    raise ValueError("config.data.dir is empty and there is no --workdir to put the data in")
  return os.path.join(workdir, "data")


def from_config(config, workdir: str | None) -> Sources:
  """Prepares (on the first process, unless prepared) and opens the configured data."""
  if config.data.source == "env":
    return _env_sources(config, workdir)
  if config.data.source == "llava":
    return _llava_sources(config)
  raise ValueError(f"config.data.source={config.data.source!r}: must be one of {SOURCES}")


def _env_sources(config, workdir: str | None) -> Sources:
  from jaxrl_gen import envs

  params = envs.params_from_config(config)
  builder_config = expert_tfds.builder_config(
      config.task, params, size=config.data.train_size, eval_size=config.data.eval_size,
      seed=config_lib.seed_of(config, "data"), options=task_options(config))
  builder = _prepare_once(builder_config, data_dir(config, workdir))
  sources = expert_tfds.load_sources(builder)
  return Sources(sources["train"], sources.get("test"), _pair_conversation,
                 builder_config.has_image, last_only=True)


def task_options(config) -> dict:
  """The task's own generation options in config.data (GP: `formula`, `revisions`, `rules`)."""
  return {key: config.data[key] for key in ("formula", "revisions", "rules")
          if key in config.data}


def _prepare_once(builder_config, directory: str):
  """The first process generates the data; the others wait for it, then open it."""
  import jax

  if jax.process_index() == 0:
    builder = expert_tfds.prepare(builder_config, directory)
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils

    multihost_utils.sync_global_devices("jaxrl_gen data prepared")
  if jax.process_index() != 0:
    builder = expert_tfds.ExpertSft(config=builder_config, data_dir=directory)
  return builder


def _pair_conversation(record) -> core.Conversation:
  return expert_tfds.record_pair(record).conversation()


def _llava_sources(config) -> Sources:
  path = config.data.llava_json
  if not path:
    raise ValueError("config.data.source='llava' needs config.data.llava_json")
  train = llava.load(path)
  test = llava.load(config.data.llava_eval_json) if config.data.llava_eval_json else None
  root = config.data.image_root or os.path.dirname(os.path.abspath(path))
  has_images = any(llava.image_paths(r) for r in train)
  return Sources(train, test, functools.partial(llava.to_conversation, image_root=root),
                 has_images, last_only=False)
