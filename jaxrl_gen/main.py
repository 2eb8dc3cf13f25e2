"""The `jaxrl-gen` command line: `jaxrl-gen COMMAND --config=configs/FILE.py:ARG [flags]`.

Each command is a module under `jaxrl_gen.commands` with a `main(config, workdir)` and any
flags of its own; one that sets `NEEDS_CONFIG = False` runs without `--config` (and gets
config=None), one with a `validate(config)` checks the config its own way (instead of
`config_lib.validate` and the environment's data files). `jaxrl-gen COMMAND --help` shows
the command's documentation and flags. Bad input (an unknown command, a missing config file,
an unknown `--config.key`, an invalid value, a data directory without its files) is one line
on stderr and exit status 2, before anything is built or compiled.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import os
import sys

from absl import app, flags
from ml_collections import config_flags

from jaxrl_gen import config_lib, envs

COMMANDS = {
    "play": ("jaxrl_gen.commands.play", "deal hands, show prompt and image, score typed answers"),
    "convert": ("jaxrl_gen.commands.convert", "HF safetensors <-> orbax model checkpoints"),
    "train": ("jaxrl_gen.commands.train",
              "train a model (mode sft or rl), resuming from --workdir"),
    "experiment": ("jaxrl_gen.commands.experiment",
                   "SFT warm-up, then SFT and RL branches at equal FLOPs, ID/OOD curves"),
    "eval": ("jaxrl_gen.commands.eval", "evaluate a checkpoint on the benchmarks of config.eval"),
    "aot": ("jaxrl_gen.commands.aot",
            "compile a config's steps for a TPU topology: per-chip memory, fits, FLOPs, MFU"),
    "config": ("jaxrl_gen.commands.config",
               "list every key of a config with its value and documentation"),
}
HELP_ARGS = ("-h", "--help", "--helpshort")

FLAGS = flags.FLAGS
_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Experiment config: configs/FILE.py:ARG (then --config.a.b=value).",
    lock_config=True)
flags.DEFINE_string("workdir", None, "Run directory: checkpoints, metrics, images, logs.")
flags.DEFINE_enum("distributed", "none", ["none", "auto", "manual"],
                  "Multi-host JAX: 'auto' on TPU pod slices (every worker runs the same command),"
                  " 'manual' with the three flags below (e.g. CPU processes on one machine).")
flags.DEFINE_string("coordinator_address", "", "host:port of process 0 (--distributed=manual).")
flags.DEFINE_integer("num_processes", 0, "Number of processes (--distributed=manual).")
flags.DEFINE_integer("process_id", -1, "This process's index (--distributed=manual).")
flags.DEFINE_boolean(
    "allow_config_changes", False, "train, experiment: resume a workdir even though the config "
    "differs from the one it was run with (the changes are recorded in "
    "<workdir>/config_changes.jsonl).")
flags.DEFINE_string("compile_cache", "",
                    "JAX's persistent compilation cache directory (a path or gs://...): "
                    "compiled steps are reused by later runs; '' = off (the experiment "
                    "command uses <workdir>/compile_cache).")

_REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class UsageError(Exception):
  """A one-line error about the command line."""


def _usage() -> str:
  lines = ["usage: jaxrl-gen COMMAND --config=configs/FILE.py:ARG [--config.a.b=value] [flags]",
           "", "commands:"]
  lines += [f"  {name:<12}{help_}" for name, (_, help_) in COMMANDS.items()]
  lines += ["", "`jaxrl-gen COMMAND --help` lists a command's flags."]
  return "\n".join(lines)


def _command_help(name: str, command) -> str:
  """`jaxrl-gen NAME --help`: the command's documentation, its own flags and the common ones."""
  config = ("--config=configs/FILE.py:ARG [--config.a.b=value] "
            if getattr(command, "NEEDS_CONFIG", True) else "")
  lines = [f"usage: jaxrl-gen {name} {config}[flags]", "",
           (command.__doc__ or COMMANDS[name][1]).strip(), ""]
  for title, module in ((f"{name} flags", command.__name__), ("common flags", __name__)):
    # module_help starts with the module's name; the title replaces it.
    body = FLAGS.module_help(module).strip().splitlines()[1:]
    if body:
      lines += [f"{title}:"] + body + [""]
  lines += ["`jaxrl-gen config --config=...` lists every config key with its value and",
            "documentation; --helpfull lists every flag."]
  return "\n".join(lines)


def _resolve_config_path(argv: list[str]) -> list[str]:
  """Lets `--config=configs/x.py:arg` work from any directory of a source checkout."""
  out = []
  for arg in argv:
    if arg.startswith("--config="):
      spec = arg[len("--config="):]
      path, sep, rest = spec.partition(":")
      if not os.path.exists(path) and os.path.exists(os.path.join(_REPO_ROOT, path)):
        arg = f"--config={os.path.join(_REPO_ROOT, path)}{sep}{rest}"
    out.append(arg)
  return out


def _load_config_file(spec: str):
  """Imports a config file and calls `get_config(arg)`, as config_flags does."""
  path, _, arg = spec.partition(":")
  if not os.path.isfile(path):
    what = "is not a file" if os.path.exists(path) else "does not exist"
    raise UsageError(f"--config: the config file {path!r} {what}")
  module_spec = importlib.util.spec_from_file_location("_jaxrl_gen_config", path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  return module.get_config(arg) if arg else module.get_config()


def _config_specs(argv: list[str]) -> list[str]:
  """The values of every `--config=SPEC` and `--config SPEC` in argv, in order."""
  specs = []
  for arg, following in zip(argv, argv[1:] + [None]):
    if arg.startswith("--config="):
      specs.append(arg[len("--config="):])
    elif arg == "--config" and following is not None:
      specs.append(following)
  return specs


def _explain_flag_error(argv: list[str], error: Exception) -> str:
  """Turns a flag-parsing failure into one line, naming the closest config keys."""
  specs = _config_specs(argv)
  if specs:
    try:
      config = _load_config_file(specs[-1])
    except (UsageError, config_lib.ConfigError, OSError) as e:
      return str(e)
    for arg in argv:
      if arg.startswith("--config."):
        key = arg[len("--config."):].split("=", 1)[0]
        if key not in config_lib.flat_keys(config):
          close = config_lib.closest_keys(config, key)
          hint = f"; did you mean {' or '.join('config.' + k for k in close)}?" if close else ""
          return f"unknown config key config.{key}{hint}"
  lines = [line for line in str(error).strip().splitlines() if line.strip()]
  return lines[-1] if lines else type(error).__name__


def _parse_flags(argv: list[str]) -> list[str]:
  try:
    rest = FLAGS(argv)
    if _CONFIG.value is not None:
      # config_flags defers a config file that failed to load (missing, a directory) to the
      # config's first use; touching it here makes that a flag error like any other.
      _CONFIG.value.get("task")
    return rest
  except Exception as e:  # absl, config files and overrides raise all sorts
    print(f"jaxrl-gen: {_explain_flag_error(argv, e)}", file=sys.stderr)
    sys.exit(2)


def enable_compile_cache(path: str) -> None:
  """Every compiled program is written to (and found in) `path`, whatever its compile time:
  a rerun, or a later phase compiling the same step, loads it instead of compiling."""
  import jax  # noqa: PLC0415

  jax.config.update("jax_compilation_cache_dir", path)
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


def _validate(config) -> None:
  """The config's own checks, then the data files its environment reads."""
  config_lib.validate(config)
  envs.check_files(config)


def run(argv: list[str] | None = None):
  """Console entry point."""
  argv = list(sys.argv if argv is None else argv)
  if len(argv) < 2 or argv[1] in ("-h", "--help", "help"):
    print(_usage())
    sys.exit(0 if len(argv) >= 2 else 2)
  name = argv[1]
  if name not in COMMANDS:
    close = difflib.get_close_matches(name, list(COMMANDS), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    print(f"jaxrl-gen: unknown command {name!r}{hint}\n\n{_usage()}", file=sys.stderr)
    sys.exit(2)
  command = importlib.import_module(COMMANDS[name][0])  # defines the command's own flags
  if any(arg in HELP_ARGS for arg in argv[2:]):
    print(_command_help(name, command))
    sys.exit(0)
  rest = _resolve_config_path(argv[2:])

  def main(unused_argv):
    config = _CONFIG.value
    if not getattr(command, "NEEDS_CONFIG", True):
      command.main(config, FLAGS.workdir)
      return
    if config is None:
      print("jaxrl-gen: --config is required, e.g. --config=configs/gp.py:l", file=sys.stderr)
      sys.exit(2)
    try:
      if FLAGS.distributed != "none":  # before validate: the mesh check counts all devices
        from jaxrl_gen import parallel  # noqa: PLC0415  (imports JAX)

        parallel.initialize_distributed(FLAGS.distributed, FLAGS.coordinator_address,
                                        FLAGS.num_processes, FLAGS.process_id)
      # A command that checks its config its own way (aot: against a TPU topology's devices;
      # config: not at all) says how.
      getattr(command, "validate", _validate)(config)
    except (config_lib.ConfigError, ValueError) as e:
      print(f"jaxrl-gen: {e}", file=sys.stderr)
      sys.exit(2)
    if FLAGS.compile_cache:
      enable_compile_cache(FLAGS.compile_cache)
    command.main(config, FLAGS.workdir)

  app.run(main, argv=[f"jaxrl-gen {name}"] + rest, flags_parser=_parse_flags)


if __name__ == "__main__":
  run()
