"""`jaxrl-gen aot`: does this config fit a TPU slice? Compile its steps for the topology.

    jaxrl-gen aot --config=configs/gp.py:vl,sft,llama-3.2-11b-vision --topology=v5p:2x2x2
    jaxrl-gen aot --config=configs/gp.py:l,rl,llama-3.2-1b --topology=v4:2x2x2 --json

Runs on any machine (libtpu describes the topology; no TPU is needed). An sft config compiles
its `sft_step`, an rl config `rescore`, `ppo_update` and `sample` (the sampler's prefill +
decode program), with the config's mesh, remat, accumulation and batch sizes: SFT batches of
`sft.batch_size` x `data.max_length`, PPO buffers of `ppo.num_steps` transitions per host of
`--prompt_length` + `sampling.max_new_tokens` tokens (`jaxrl_gen.aot` says how the figures
are made). Prints per function: compile seconds, per-chip argument / output / temporary /
peak GiB against the chip's HBM, fits or not, model FLOPs (6ND; 2ND for sampling) and a
roofline step time with the MFU it implies; `--json`: one JSON object per function per line.
Exit status 1 when a function does not fit (with a one-line reason and what would), 2 for a
bad config, topology or a mesh that replicates a model one chip cannot hold.
"""

from __future__ import annotations

import json
import sys

from absl import flags

from jaxrl_gen import config_lib

_TOPOLOGY = flags.DEFINE_string(
    "topology", None, "TPU topology KIND:SHAPE, e.g. v5p:2x2x2, v4:2x2x4, v5e:4x4, v6e:2x4.")
_JSON = flags.DEFINE_boolean("json", False, "One JSON object per compiled function per line.")
_PROMPT_LENGTH = flags.DEFINE_integer(
    "prompt_length", 512, "RL: prompt tokens of the abstract buffer and sampler rows.")
_FUNCTIONS = flags.DEFINE_list("functions", [], "Compile only these (default: all of the mode).")


def validate(config) -> None:
  """The config against the topology's chips and hosts (not this machine's devices)."""
  from jaxrl_gen import aot  # noqa: PLC0415
  from jaxrl_gen.train import steps  # noqa: PLC0415

  if not _TOPOLOGY.value:
    raise config_lib.ConfigError("jaxrl-gen aot needs --topology, e.g. --topology=v5p:2x2x2")
  mesh = aot.topology_mesh(_TOPOLOGY.value, config.mesh.shape)
  config_lib.validate(config, num_devices=mesh.devices.size, process_count=steps.processes(mesh),
                      files=False)


def main(config, workdir: str | None):
  del workdir
  from jaxrl_gen import aot  # noqa: PLC0415

  def show(report):
    print(json.dumps(report.to_json()) if _JSON.value else report.line(), flush=True)

  try:
    reports = aot.check(config, _TOPOLOGY.value, prompt_length=_PROMPT_LENGTH.value,
                        functions=_FUNCTIONS.value, on_report=show)
  except (aot.DoesNotFit, ValueError) as e:
    print(f"jaxrl-gen aot: {e}", file=sys.stderr)
    sys.exit(2)
  misfits = [r for r in reports if not r.fits]
  for report in misfits:
    print(f"jaxrl-gen aot: {aot.advice(config, report)}", file=sys.stderr)
  sys.exit(1 if misfits else 0)
