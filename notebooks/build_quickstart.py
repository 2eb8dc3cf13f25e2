"""Commits notebooks/quickstart.ipynb with its outputs, made the way the tests run it.

    python notebooks/build_quickstart.py           # execute it and write it back with outputs
    python notebooks/build_quickstart.py --check   # execute it and compare with the committed

The notebook runs top to bottom in a fresh kernel (nbclient) on the CPU, offline
(`HF_HUB_OFFLINE=1`, no token: the hub cell says it is skipped), in a temporary directory.
Its outputs are then put in one normal form (`normalise`): the temporary directory reads
`runs/quickstart`, stderr (progress lines, library warnings) is dropped, execution counts are
1, 2, ... and no timing metadata is kept, so the same execution writes the same file.
`tests/test_notebook.py` executes the notebook with `execute` and checks with `compare`
that the committed outputs are what this script makes: the same cells and sources, outputs of
the same kinds (the curves' image among them), and the same printed lines once numbers are
masked (training numbers differ across machines, `docs/generalization.md`), runs of spaces
read as one, and the free text of the SmolLM2 answer set aside.
"""

from __future__ import annotations

import argparse
import copy
import os
import pathlib
import re
import sys
import tempfile

import nbclient
import nbformat

NOTEBOOK = pathlib.Path(__file__).resolve().parent / "quickstart.ipynb"
SHOWN_WORKDIR = "runs/quickstart"
TIMEOUT_S = 600
# A model's free text in the printed lines (SmolLM2's answer, of any lines, and the
# verifier's verdict on it): set aside by `shape`.
_FREE_TEXT = re.compile(r"^(SmolLM2 \(.*?answers:|verifier:).*?(?=^verifier:|\Z)",
                        re.MULTILINE | re.DOTALL)
_NUMBER = re.compile(r"-?\d+(\.\d+)?(e[-+]?\d+)?")


def execute(path: str | os.PathLike = NOTEBOOK, workdir: str | os.PathLike | None = None
            ) -> nbformat.NotebookNode:
  """The notebook at `path`, executed as the tests run it, in `workdir` (default: a
  temporary directory), normalised."""
  notebook = nbformat.read(path, as_version=4)
  with tempfile.TemporaryDirectory(prefix="quickstart_") as scratch:
    workdir = pathlib.Path(workdir or scratch)
    client = nbclient.NotebookClient(notebook, timeout=TIMEOUT_S, kernel_name="python3",
                                     resources={"metadata": {"path": str(workdir)}})
    client.execute(env={**os.environ, "QUICKSTART_DIR": str(workdir / "runs"),
                        "HF_HUB_OFFLINE": "1", "HF_TOKEN": "", "XLA_FLAGS": "",
                        "JAX_PLATFORMS": "cpu", "TOKENIZERS_PARALLELISM": "false"})
    return normalise(notebook, workdir)


def normalise(notebook: nbformat.NotebookNode, workdir: str | os.PathLike
              ) -> nbformat.NotebookNode:
  """The module docstring's normal form of an executed notebook."""
  notebook = copy.deepcopy(notebook)
  shown = {str(pathlib.Path(workdir) / "runs"): SHOWN_WORKDIR, str(workdir): "."}
  count = 0
  for cell in notebook.cells:
    cell.metadata.pop("execution", None)
    if cell.cell_type != "code":
      continue
    count += 1
    cell.execution_count = count
    outputs = []
    for output in cell.outputs:
      if output.output_type == "stream" and output.name == "stderr":
        continue
      if "execution_count" in output:
        output.execution_count = count
      if output.output_type == "stream":
        for local, name in shown.items():
          output.text = output.text.replace(local, name)
        if outputs and outputs[-1].output_type == "stream" and outputs[-1].name == output.name:
          outputs[-1].text += output.text  # one stream, however the kernel cut it up
          continue
      outputs.append(output)
    cell.outputs = outputs
  return notebook


def _lines(text: str) -> list[str]:
  text = _NUMBER.sub("#", _FREE_TEXT.sub(r"\1 ...\n", text))
  return [re.sub(r"\s+", " ", line).strip() for line in text.splitlines()]  # columns move


def shape(notebook: nbformat.NotebookNode) -> list:
  """What two executions of the notebook share, cell by cell: its type and source, and per
  output its kind and its printed lines with numbers masked (an image: that it is one)."""
  cells = []
  for cell in notebook.cells:
    outputs = []
    for output in cell.get("outputs", []):
      if output.output_type == "stream":
        outputs.append(("stream", output.name, _lines(output.text)))
      else:
        data = output.get("data", {})
        outputs.append((output.output_type, sorted(data),
                        _lines(data.get("text/plain", "")) if "image/png" not in data else []))
    cells.append((cell.cell_type, cell.source, outputs))
  return cells


def compare(committed: nbformat.NotebookNode, fresh: nbformat.NotebookNode) -> list[str]:
  """The differences between the committed notebook and a fresh execution ([] when the
  committed outputs are what this script makes)."""
  problems = []
  if normalise(committed, "/nonexistent") != committed:
    problems.append("the committed notebook is not in normal form: run this script")
  a, b = shape(committed), shape(fresh)
  if len(a) != len(b):
    return problems + [f"{len(a)} cells committed, {len(b)} executed"]
  for index, (x, y) in enumerate(zip(a, b)):
    if x != y:
      problems.append(f"cell {index}: committed {x!r:.300} != executed {y!r:.300}")
  return problems


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--check", action="store_true",
                      help="compare a fresh execution with the committed notebook")
  args = parser.parse_args(argv)
  fresh = execute()
  if args.check:
    problems = compare(nbformat.read(NOTEBOOK, as_version=4), fresh)
    print("\n".join(problems) or f"{NOTEBOOK.name}: the committed outputs are reproduced")
    return 1 if problems else 0
  nbformat.write(fresh, NOTEBOOK)
  print(f"wrote {NOTEBOOK} with its outputs")
  return 0


if __name__ == "__main__":
  sys.exit(main())
