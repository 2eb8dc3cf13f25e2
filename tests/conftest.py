"""Test-wide setup. Runs before any test module imports JAX, so the flags below take effect:
8 simulated CPU devices for the sharding tests, CPU only, no model-hub access, one OpenMP
thread."""

import os

os.environ["XLA_FLAGS"] = " ".join(
    [os.environ.get("XLA_FLAGS", ""), "--xla_force_host_platform_device_count=8"]).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# One OpenMP thread (PyTorch's reference models, NumPy's BLAS), here and in the subprocesses:
# the suite runs as 2 xdist workers on 2 cores, where PyTorch's spinning OpenMP threads cost
# several times the CPU of one thread (a 32-token SmolLM2 generate: 10-20 s against 2 s).
os.environ.setdefault("OMP_NUM_THREADS", "1")
# pytest-xdist workers each load libtpu for the AOT tests; libtpu refuses a second loader
# on one host without this.
os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")

import pathlib  # noqa: E402

import pytest  # noqa: E402

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
# The reference card faces (MIT) beside the project, when this checkout has them.
SHARED_CARDS = REPO_ROOT.parent / "shared" / "cards"


@pytest.fixture
def repo_root() -> pathlib.Path:
  return REPO_ROOT


@pytest.fixture(scope="module")
def subprocess_compile_cache(tmp_path_factory):
  """One persistent compilation cache for the processes a module starts (`jaxrl-gen` runs read
  JAX_COMPILATION_CACHE_DIR): a later run of the same config loads the executables an earlier
  one compiled (the same programs, so the same numbers). This process read its JAX config when
  it imported JAX, so its own compiles are not cached."""
  with pytest.MonkeyPatch.context() as patch:
    patch.setenv("JAX_COMPILATION_CACHE_DIR", str(tmp_path_factory.mktemp("jax_cache")))
    patch.setenv("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
    patch.setenv("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "-1")
    yield
