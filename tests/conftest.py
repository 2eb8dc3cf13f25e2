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

import importlib  # noqa: E402
import pathlib  # noqa: E402

import pytest  # noqa: E402

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
# The reference card faces (MIT) beside the project, when this checkout has them.
SHARED_CARDS = REPO_ROOT.parent / "shared" / "cards"


@pytest.fixture
def repo_root() -> pathlib.Path:
  return REPO_ROOT


@pytest.fixture(scope="module")
def compile_cache(tmp_path_factory):
  """One persistent compilation cache for a module's runs, in this process and in the processes
  it starts (`jaxrl-gen` runs read JAX_COMPILATION_CACHE_DIR): a run of a config that an earlier
  run already compiled loads those executables (the same programs, so the same numbers). The
  trainers build their jitted steps afresh for every run, so JAX's in-memory caches miss there.
  For modules that rerun a config (kill and resume, refusals, reruns): `pytestmark =
  pytest.mark.usefixtures("compile_cache")`. Never for one that counts compilations."""
  import jax  # noqa: PLC0415
  from jax.experimental.compilation_cache import compilation_cache  # noqa: PLC0415

  directory = str(tmp_path_factory.mktemp("jax_cache"))
  settings = {"jax_compilation_cache_dir": directory,
              "jax_persistent_cache_min_compile_time_secs": 0.0,
              "jax_persistent_cache_min_entry_size_bytes": -1}
  saved = {name: getattr(jax.config, name) for name in settings}
  with pytest.MonkeyPatch.context() as patch:
    for name, value in settings.items():
      patch.setenv(name.upper(), str(value))
      jax.config.update(name, value)
    compilation_cache.reset_cache()  # JAX decides once whether it uses the cache
    try:
      yield directory
    finally:
      for name, value in saved.items():
        jax.config.update(name, value)
      compilation_cache.reset_cache()


def _fake_gcs_class():
  from fsspec.implementations.memory import MemoryFileSystem  # noqa: PLC0415

  class FakeGCS(MemoryFileSystem):
    """gs:// paths in memory; an object cannot be appended to, as on GCS."""

    protocol = ("gs", "gcs")
    store: dict = {}
    pseudo_dirs = [""]

    @classmethod
    def _strip_protocol(cls, path):
      return super()._strip_protocol(str(path).removeprefix("gs://"))

    def _open(self, path, mode="rb", **kwargs):
      if "a" in mode:
        raise NotImplementedError(f"GCS objects cannot be appended to: {path}")
      return super()._open(path, mode, **kwargs)

  return FakeGCS


@pytest.fixture
def fake_gcs(monkeypatch):
  """An in-memory GCS for this test only: epath's gs:// backend (fsspec 'gcs') on a memory
  file system that refuses appends as GCS does; yields its {path: file} store."""
  from etils.epath import backend as epath_backend  # noqa: PLC0415

  fake = _fake_gcs_class()
  registry = importlib.import_module("fsspec.registry")._registry
  monkeypatch.setitem(registry, "gcs", fake)
  monkeypatch.setitem(registry, "gs", fake)
  epath_backend.fsspec_backend._get_filesystem.cache_clear()  # a cached real GCS, or ours
  yield fake.store
  fake.store.clear()
  fake.pseudo_dirs[:] = [""]
  epath_backend.fsspec_backend._get_filesystem.cache_clear()
