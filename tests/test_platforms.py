"""Which JAX platforms start (`jaxrl_gen.platforms`): on a host without TPUs, JAX never starts
libtpu, so a command prints nothing of it; TPU and GPU hosts, and a JAX_PLATFORMS the user
set, are left to JAX."""

import os
import subprocess
import sys

import pytest

from jaxrl_gen import platforms


@pytest.mark.parametrize("environ, tpus, nvidia, amd, plugins, expected", [
    ({}, 0, False, False, [], "cpu"),                                 # a laptop, a CPU VM
    ({}, 0, False, False, ["xla_cuda12"], "cpu"),                     # CUDA plugin, no GPU
    ({}, 0, True, False, ["xla_cuda12"], "cuda,cpu"),                 # a CUDA machine
    ({}, 0, False, True, ["xla_rocm7"], "rocm,cpu"),                  # an AMD machine
    ({}, 4, False, False, [], None),                                  # a TPU VM: JAX picks
    ({"JAX_FORCE_TPU_INIT": "1"}, 0, False, False, [], None),
    ({"JAX_PLATFORMS": "cpu"}, 0, True, False, ["xla_cuda12"], None),  # the user's choice
    ({"JAX_PLATFORMS": ""}, 0, False, False, [], None),              # '': JAX's own choice
    ({}, 0, True, False, [], None),              # a GPU without its plugin: JAX warns
    ({}, 0, False, False, ["some_vendor"], None),  # a plugin of unknown platform
])
def test_the_platforms_chosen_for_each_kind_of_host(environ, tpus, nvidia, amd, plugins,
                                                     expected):
  assert platforms.choose(environ, tpus, nvidia, amd, plugins) == expected


def test_tpu_chips_are_counted_from_the_pci_bus(tmp_path):
  for name, vendor, device in [("0000:00:04.0", "0x1ae0", "0x0062"),   # a v5p chip
                               ("0000:00:05.0", "0x1ae0", "0x0062"),
                               ("0000:00:06.0", "0x1ae0", "0x0001"),   # Google, not a TPU
                               ("0000:00:07.0", "0x10de", "0x0062")]:  # not Google
    (tmp_path / name).mkdir()
    (tmp_path / name / "vendor").write_text(vendor + "\n")
    (tmp_path / name / "device").write_text(device + "\n")
  assert platforms.tpu_chips(str(tmp_path)) == 2
  assert platforms.tpu_chips(str(tmp_path / "none")) == 0


def test_configure_sets_jax_platforms_only_where_unset():
  environ = {}
  value = platforms.configure(environ)
  assert environ.get("JAX_PLATFORMS") == value
  mine = {"JAX_PLATFORMS": "cpu,tpu"}
  assert platforms.configure(mine) is None and mine == {"JAX_PLATFORMS": "cpu,tpu"}


def _jaxrl_gen(repo_root, *args):
  env = {k: v for k, v in os.environ.items() if k not in ("JAX_PLATFORMS", "XLA_FLAGS")}
  return subprocess.run([sys.executable, "-m", "jaxrl_gen", *args], cwd=repo_root, env=env,
                        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(platforms.configure({}) != "cpu", reason="a host with accelerators")
def test_on_a_cpu_host_play_and_a_config_error_print_nothing_of_libtpu(repo_root, tmp_path):
  """With libtpu installed and JAX_PLATFORMS unset (the README's install on a laptop):
  `jaxrl-gen play` prints nothing on stderr, and a config error that starts JAX (the mesh
  against the devices) is its one line."""
  play = _jaxrl_gen(repo_root, "play", "--config=configs/gp.py:l", "--answer=(2-10)*(6-9)",
                    f"--workdir={tmp_path / 'play'}")
  assert play.returncode == 0 and "reward 5" in play.stdout, play.stderr
  assert play.stderr == ""
  error = _jaxrl_gen(repo_root, "train", "--config=configs/gp.py:l,sft,tiny",
                     "--config.mesh.shape=(3,1,1)", f"--workdir={tmp_path / 'run'}")
  assert error.returncode == 2
  assert error.stderr == ("jaxrl-gen: config.mesh: mesh shape (3, 1, 1) needs 3 devices,"
                          " have 1\n")
