"""Pure-function environments. `get(task)` returns a task module that follows `core.Env`,
`task(name)` its record (`core.Task`)."""

from __future__ import annotations

import importlib

from jaxrl_gen.envs import core

TASKS = {"gp": "jaxrl_gen.envs.general_points", "virl": "jaxrl_gen.envs.virl"}


def get(task: str):
  """The environment module of a task name ('gp', ...)."""
  if task not in TASKS:
    raise ValueError(f"unknown task {task!r}; known: {', '.join(TASKS)}")
  return importlib.import_module(TASKS[task])


def task(name: str) -> core.Task:
  """The `core.Task` record of a task name: what evaluation and the trainers read of it."""
  return get(name).TASK


def params_from_config(config):
  """The task's frozen `EnvParams` built from `config.env` (field names are the same)."""
  return get(config.task).EnvParams(**config.env.to_dict())


def check_files(config) -> None:
  """Raises a one-line ValueError when a data file the config's environment reads is missing
  (a task module may define `check_files(params)`); cheap: run it before anything is built."""
  check = getattr(get(config.task), "check_files", None)
  if check is not None:
    check(params_from_config(config))
