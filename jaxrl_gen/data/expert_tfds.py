"""The expert SFT data as a TFDS data set (array_record files; no TensorFlow needed).

    builder = prepare(task="gp", env=params, size=51200, eval_size=256, seed=0, data_dir=...)
    sources = load_sources(builder)    # {'train': random-access source, 'test': ...}

One builder, `ExpertSft`, serves every task with experts (`experts.TASKS`): its
`ExpertSftConfig` holds the task, the environment variant (the `EnvParams` fields), the split
sizes, the seed and the generation options, and is named by a digest of them, so different
settings never share files and the same settings find the prepared data. Features: `prompt`
and `response` (text), `history` (JSON list of [failed answer, verifier message] before the
response; empty for single-turn pairs), `meta` (JSON text) and, for variants with an image,
`image` (stored as PNG bytes; read back undecoded and decoded with PIL by the pipeline).
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import logging
import os
from typing import Any

import tensorflow_datasets as tfds

from jaxrl_gen.data import experts

VERSION = "1.1.0"
SPLITS = {"train": 0, "test": 1}  # the split's stream id in the episode seeds


class _CustomConfigFilter(logging.Filter):
  """Every config here is custom (named by its settings); TFDS warns about each one."""

  def filter(self, record: logging.LogRecord) -> bool:
    return not str(record.msg).startswith("Using custom data configuration")


logging.getLogger("absl").addFilter(_CustomConfigFilter())


@dataclasses.dataclass
class ExpertSftConfig(tfds.core.BuilderConfig):
  task: str = "gp"
  env: str = "{}"  # JSON of the EnvParams fields
  size: int = 0  # training episodes
  eval_size: int = 0  # held-out episodes (the 'test' split)
  seed: int = 0
  options: str = "{}"  # JSON of the generator options (e.g. {"formula": "random"})
  has_image: bool = False


def builder_config(task: str, env: Any, *, size: int, eval_size: int, seed: int,
                   options: dict | None = None) -> ExpertSftConfig:
  """The config of the data set for a task variant; named `{task}_{l|vl}_{digest}`."""
  if size < 1 or eval_size < 0:
    raise ValueError(f"data sizes must be size >= 1 and eval_size >= 0, got {size}, {eval_size}")
  env_fields = dataclasses.asdict(env) if dataclasses.is_dataclass(env) else dict(env)
  settings = dict(task=task, env=json.dumps(env_fields, sort_keys=True), size=int(size),
                  eval_size=int(eval_size), seed=int(seed),
                  options=json.dumps(options or {}, sort_keys=True),
                  has_image=not env_fields.get("language_only", True))
  digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]
  name = f"{task}_{'vl' if settings['has_image'] else 'l'}_{digest}"
  return ExpertSftConfig(name=name, version=VERSION, description=json.dumps(settings), **settings)


class ExpertSft(tfds.core.GeneratorBasedBuilder):
  """Expert prompt -> response pairs generated from an environment."""

  VERSION = tfds.core.Version(VERSION)

  def _info(self) -> tfds.core.DatasetInfo:
    features = {"prompt": tfds.features.Text(), "response": tfds.features.Text(),
                "history": tfds.features.Text(), "meta": tfds.features.Text()}
    if self.builder_config.has_image:
      features["image"] = tfds.features.Image(encoding_format="png")
    return tfds.core.DatasetInfo(
        builder=self, description=self.builder_config.description,
        features=tfds.features.FeaturesDict(features))

  # TFDS announces a download of unknown size; nothing is downloaded, the data are generated.
  def _log_download_bytes(self) -> None:
    config = self.builder_config
    print(f"generating expert SFT data ({config.task}: {config.size} training + "
          f"{config.eval_size} held-out episodes) into {self.data_dir} ...", flush=True)

  def _log_download_done(self) -> None:
    print(f"expert SFT data ready in {self.data_dir}; later runs with the same settings reuse "
          "it", flush=True)

  def _split_generators(self, dl_manager):
    config = self.builder_config
    sizes = {"train": config.size, "test": config.eval_size}
    return {split: self._generate_examples(split, n) for split, n in sizes.items() if n}

  def _generate_examples(self, split: str, count: int):
    config = self.builder_config
    params = _env_params(config)
    options = json.loads(config.options)
    for index in range(count):
      for j, pair in enumerate(experts.episode_pairs(config.task, params, options, config.seed,
                                                     SPLITS[split], index)):
        example = {"prompt": pair.prompt, "response": pair.response,
                   "history": json.dumps(pair.history),
                   "meta": json.dumps({"episode": index, **pair.meta})}
        if config.has_image:
          example["image"] = png_bytes(pair.image)
        yield f"{index}_{j}", example


def _env_params(config: ExpertSftConfig):
  from jaxrl_gen import envs

  return envs.get(config.task).EnvParams(**json.loads(config.env))


def png_bytes(image) -> bytes:
  buffer = io.BytesIO()
  image.save(buffer, format="PNG")
  return buffer.getvalue()


def prepare(config: ExpertSftConfig, data_dir: str | os.PathLike) -> ExpertSft:
  """Generates the data set into `data_dir` unless it is there already; returns the builder."""
  builder = ExpertSft(config=config, data_dir=os.fspath(data_dir))
  tfds.display_progress_bar(False)
  builder.download_and_prepare(file_format="array_record")
  return builder


def load_sources(builder: ExpertSft) -> dict:
  """{split: random-access source of dicts} with images left as PNG bytes."""
  decoders = {"image": tfds.decode.SkipDecoding()} if builder.builder_config.has_image else None
  return builder.as_data_source(decoders=decoders)


def record_pair(record: dict) -> experts.Pair:
  """A stored example back as a `Pair` (text decoded, image a PIL image)."""
  from jaxrl_gen.text import images

  image = record.get("image")
  history = tuple(tuple(turn) for turn in json.loads(_text(record["history"])))
  return experts.Pair(_text(record["prompt"]), _text(record["response"]),
                      images.to_pil(image) if image is not None else None,
                      json.loads(_text(record["meta"])), history)


def _text(value) -> str:
  return value.decode("utf-8") if isinstance(value, bytes) else str(value)
