"""Pod scale on a CPU: the trainers' own steps compiled ahead of time for TPU topologies
(libtpu), their per-chip memory, sharding constraints and model FLOPs; `jaxrl-gen aot`'s
exit codes and one-line refusals."""

import dataclasses
import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from configs import gp
from jaxrl_gen import aot, chips, parallel, platforms
from jaxrl_gen.models import mllama
from jaxrl_gen.train import steps

pytest.importorskip("libtpu")


def _tiny(arg: str, **changes):
  config = gp.get_config(arg)
  with config.unlocked():
    for key, value in changes.items():
      section, name = key.split("__")
      config[section][name] = value
  return config


@pytest.mark.parametrize("topology", ["v5p:2x2x2", "v4:2x2x2"])
def test_tiny_sft_and_rl_steps_compile_for_tpu_topologies_and_fit(topology):
  sft = _tiny("vl,sft,tiny", sft__batch_size=16, data__max_length=128)
  reports = aot.check(sft, topology)
  assert [r.function for r in reports] == ["sft_step"]
  rl = _tiny("l,rl,tiny-text", ppo__num_steps=16, ppo__num_envs=4, ppo__rescore_chunk=4,
             sampling__max_new_tokens=32)
  reports += aot.check(rl, topology, prompt_length=64)
  assert [r.function for r in reports] == ["sft_step", "rescore", "ppo_update", "sample"]
  chip = chips.lookup("TPU v5" if topology.startswith("v5p") else "TPU v4")
  for r in reports:
    assert r.fits and r.chips == 8 and r.chip == chip.name
    assert 0 < r.peak_gib_per_chip < 1 and r.hbm_gib_per_chip == chip.usable_hbm / chips.GIB
    assert r.est_step_s > 0 and 0 < r.est_mfu <= 1
    record = r.to_json()
    for key in ("function", "topology", "fits", "peak_gib_per_chip", "hbm_gib_per_chip",
                "model_flops", "est_step_s"):
      assert key in record
  # Model FLOPs are the paper's 6ND (2ND without gradients), D the tokens of one call.
  n_vl = mllama.param_count(steps.model_config(sft, parallel.make_mesh((-1, 1, 1))))
  assert reports[0].model_flops == 6.0 * n_vl * 16 * 128
  n_text = mllama.param_count(steps.model_config(rl, parallel.make_mesh((-1, 1, 1))))
  update = reports[2]
  assert update.tokens == 16 * 2 * (64 + 64) * rl.ppo.ppo_epochs  # 2 hosts, lengths to 64
  assert update.model_flops == 6.0 * n_text * update.tokens
  assert reports[1].model_flops == 2.0 * n_text * reports[1].tokens


@pytest.mark.parametrize("topology, kind", [("v4:2x2x1", "TPU v4"), ("v5p:2x2x1", "TPU v5"),
                                            ("v5e:2x2", "TPU v5 lite"), ("v6e:2x2", "TPU v6 lite")])
def test_each_chips_usable_hbm_is_the_figure_libtpu_compiles_against(topology, kind):
  """`chips`' one usable-HBM figure per chip is the one libtpu compiles against (a v4: 30.75
  GiB, not the published 32); every row of `aot.check` compares with it (the test above)."""
  chip = chips.lookup(kind)
  assert aot.usable_hbm_bytes(topology) == chip.usable_hbm <= 1.01 * chip.hbm_bytes


def test_every_row_of_the_fit_table_is_held_to_its_chips_usable_hbm(repo_root):
  """docs/pod_fit.jsonl: one HBM figure per chip in every row, the usable one, each verdict
  its peak against it, and the advice aot gives today."""
  records = [json.loads(line) for line in (repo_root / "docs" / "pod_fit.jsonl").open()]
  for r in records:
    usable = chips.lookup(r["chip"]).usable_hbm / chips.GIB
    assert r["hbm_gib_per_chip"] == pytest.approx(usable, abs=1e-4), r["row"]
    assert r["fits"] == (r["peak_gib_per_chip"] <= r["hbm_gib_per_chip"]), r["row"]
    if "sample needs" in r["error"]:  # a sampler over HBM is advised fewer rows a call
      assert "sampling.max_rows" in r["error"] and "grad_accum" not in r["error"], r["row"]


def test_the_sft_step_as_the_trainer_runs_it_applies_the_activation_constraints():
  """The trainer's step is traced under the mesh: the model's `parallel.constrain` calls and
  the embedding gather's constraint reach the lowered program (outside the mesh they are
  no-ops)."""
  config = _tiny("l,sft,tiny-text", sft__batch_size=8, data__max_length=64)
  built = steps.sft(config, parallel.make_mesh((2, 4, 1)))
  step = built["sft_step"]
  constrained = step.lower().as_text().count("sdy.sharding_constraint")
  bare = step.fn.lower(*step.args).as_text().count("sdy.sharding_constraint")
  assert bare == 0 and constrained >= 8, (bare, constrained)


def test_ppo_micro_batches_take_rows_from_every_data_shard_without_permuting_the_buffer():
  from jaxrl_gen.train import ppo  # noqa: PLC0415

  rows = np.asarray(ppo.shuffled_rows(jax.random.key(0), 64, steps=4, shards=8))
  assert rows.shape == (4, 8, 2)
  for block in range(8):  # each shard's 8 rows, each once per pass
    assert sorted(rows[:, block].ravel()) == list(range(8))
  batch = {"x": np.arange(64) * 10}
  micro = np.asarray(ppo.take_rows(batch, rows[1])["x"])
  expected = [10 * (8 * block + i) for block in range(8) for i in rows[1, block]]
  assert micro.tolist() == expected
  # One shard: the reference's permutation of all rows, cut in order.
  order = np.asarray(jax.random.permutation(jax.random.key(3), 64))
  one = np.asarray(ppo.shuffled_rows(jax.random.key(3), 64, steps=4, shards=1))
  assert one.reshape(-1).tolist() == order.tolist()


def _aot_cli(*args):
  env = dict(os.environ)
  env.pop("XLA_FLAGS", None)
  env.pop("JAX_PLATFORMS", None)  # as a user runs it: jaxrl_gen.platforms decides
  return subprocess.run([sys.executable, "-m", "jaxrl_gen.main", "aot", *args],
                        capture_output=True, text=True, env=env, timeout=600)


def test_aot_cli_prints_json_and_refuses_what_cannot_fit(repo_root):
  config = f"--config={repo_root}/configs/gp.py:l,sft,tiny-text"
  ok = _aot_cli(config, "--topology=v5p:2x2x2", "--json", "--config.sft.batch_size=8",
                "--config.data.max_length=64")
  assert ok.returncode == 0, ok.stderr[-2000:]
  (record,) = [json.loads(line) for line in ok.stdout.splitlines() if line.startswith("{")]
  assert record["function"] == "sft_step" and record["fits"] and record["topology"] == "v5p:2x2x2"
  if platforms.configure({}) == "cpu":  # libtpu describes the topology and prints nothing
    assert ok.stderr == ""
  # A 1B model replicated by a data-parallel mesh: refused before compiling, in one line.
  replicated = _aot_cli(f"--config={repo_root}/configs/gp.py:l,sft,llama-3.2-1b",
                        "--topology=v5e:2x2", "--config.mesh.shape=(-1,1,1)")
  assert replicated.returncode == 2
  assert replicated.stderr.strip().splitlines()[-1].startswith("jaxrl-gen aot: mesh (4, 1, 1)")
  assert "--config.mesh.shape='(1,-1,1)'" in replicated.stderr
  # The 1B recipe without remat on a v5e: compiled, over HBM, exit 1 with what would fit.
  over = _aot_cli(f"--config={repo_root}/configs/gp.py:l,sft,llama-3.2-1b",
                  "--topology=v5e:2x2", "--config.model.remat=none")
  assert over.returncode == 1, over.stderr[-2000:]
  assert "DOES NOT FIT" in over.stdout
  advice = over.stderr.strip().splitlines()[-1]
  assert advice.startswith("jaxrl-gen aot: sft_step needs")
  assert "--config.model.remat=full" in advice
  bad = _aot_cli(config, "--topology=v9:2x2")
  assert bad.returncode == 2 and "topology 'v9:2x2'" in bad.stderr.strip().splitlines()[-1]


_DESCRIBE = """
import json, sys
if sys.argv[1] == "aot":
  import jaxrl_gen.aot  # sets libtpu's quiet host settings
from jax.experimental import topologies
out = []
for name in ("v4:2x2x2", "v5p:2x2x2", "v5e:4x4"):
  options = {"chip_config_name": "megacore"} if name.startswith("v4") else {}
  out.append([(d.id, d.process_index, d.device_kind, list(d.coords), d.core_on_chip)
              for d in topologies.get_topology_desc(name, "tpu", **options).devices])
print(json.dumps(out))
"""


def test_the_quiet_libtpu_settings_describe_the_same_topologies():
  """`jaxrl_gen.aot` gives libtpu a host identity on a machine without TPUs (so it prints
  nothing): the devices, hosts and coordinates it describes are those it describes without."""
  env = {k: v for k, v in os.environ.items()
         if k not in ("TPU_ACCELERATOR_TYPE", "TPU_WORKER_HOSTNAMES", "XLA_FLAGS")}
  runs = [subprocess.run([sys.executable, "-c", _DESCRIBE, how], capture_output=True,
                         text=True, env=env, timeout=300) for how in ("bare", "aot")]
  for run in runs:
    assert run.returncode == 0, run.stderr[-2000:]
  bare, quiet = (json.loads(run.stdout.splitlines()[-1]) for run in runs)
  assert quiet == bare and [len(t) for t in bare] == [8, 8, 16]
  if platforms.configure({}) == "cpu":
    assert runs[1].stderr == ""


def test_validate_refuses_a_training_mesh_that_cannot_hold_the_state(monkeypatch):
  """On a chip of known memory (here the 8 CPU devices posing as v5e chips, 15.75 GiB
  usable), a 1B SFT run whose mesh replicates the weights is a one-line config error before
  any loading; the FSDP recipe passes. CPUs (unknown memory) are never refused."""
  from jaxrl_gen import config_lib  # noqa: PLC0415

  config = _tiny("l,sft,llama-3.2-1b", text__tokenizer="/some/checkpoint",
                 mesh__shape=(-1, 1, 1))
  config_lib.validate(config)  # a CPU: nothing to compare with
  v5e = chips.lookup("TPU v5 lite")
  monkeypatch.setattr(chips, "lookup", lambda kind: v5e)
  with pytest.raises(config_lib.ConfigError, match=r"config.mesh: mesh \(8, 1, 1\) shards the"
                     r" weights 1 ways: .* 18\.\d GiB .* a chip has 15\.75;"):
    config_lib.validate(config)
  with config.unlocked():
    config.mesh.shape = (1, -1, 1)
  config_lib.validate(config)


def test_a_run_that_keeps_a_frozen_reference_counts_it_on_every_chip():
  """GRPO with a KL term holds a copy of the trained parameters beside the policy for the whole
  run: each step's per-chip peak includes that copy's shard; without a KL there is none."""
  shapes = dict(ppo__num_steps=16, ppo__num_envs=16, ppo__rescore_chunk=4,
                sampling__max_new_tokens=32, grpo__groups=4)
  with_kl = _tiny("l,grpo,tiny-text", **shapes)
  without = _tiny("l,grpo,tiny-text", ppo__kl_coef=0.0, **shapes)
  assert with_kl.ppo.kl_coef > 0
  (kept,) = aot.check(with_kl, "v5p:2x2x2", prompt_length=64, functions=["rescore"])
  (bare,) = aot.check(without, "v5p:2x2x2", prompt_length=64, functions=["rescore"])
  assert bare.resident_gib == 0
  mesh = aot.topology_mesh("v5p:2x2x2", with_kl.mesh.shape)
  mc = steps.model_config(with_kl, mesh)
  weight_shards = mesh.shape["fsdp"] * mesh.shape["tensor"]
  # the trained parameters in their dtype, sharded as the policy's (norms replicated: a bit more)
  floor = mllama.param_count(mc) * np.dtype(mc.param_dtype).itemsize / weight_shards / 2 ** 30
  assert floor <= kept.resident_gib < 1.5 * floor
  assert kept.peak_gib_per_chip == pytest.approx(bare.peak_gib_per_chip + kept.resident_gib)
  assert "reference" in kept.line() and "reference" not in bare.line()


def test_a_sampler_over_hbm_is_advised_fewer_rows_a_call_not_more_micro_batches():
  """The 11B GRPO recipe on a v5p:2x2x2 as measured (docs/pods.md): 256 rows a host decoded at
  once need 177.8 GiB of temporaries; the advice is the largest power-of-two share of them a
  call whose temporaries fit (64: 44 GiB), not PPO's gradient accumulation; the sample step
  then compiles for that many rows."""
  config = _tiny("vl,grpo,llama-3.2-11b-vision")
  report = aot.Report(function="sample", topology="v5p:2x2x2", chip="TPU v5p", chips=8,
                      hosts=2, mesh=(1, 8, 1), compile_s=9.0, argument_gib=5.87, output_gib=0.0,
                      alias_gib=0.0, temp_gib=177.78, hbm_gib_per_chip=95.0, model_flops=1.0,
                      tokens=1, est_step_s=1.0, resident_gib=4.97)
  line = aot.advice(config, report)
  assert config.ppo.num_envs == 256 and "--config.sampling.max_rows=64 (rows a host" in line
  assert "grad_accum" not in line
  tiny = _tiny("l,grpo,tiny-text", sampling__max_rows=4)
  assert tiny.ppo.num_envs == 64
  mesh = parallel.make_mesh((1, -1, 1))
  rows = steps.rl(tiny, mesh, prompt_length=16)["sample"].args[1]["ids"].shape[0]
  assert rows == 8  # one call's 4 rows, padded to the 8 batch shards (not the 64 episodes)
