"""Metrics of a run: JSONL and TensorBoard writers, a progress bar, FLOPs and MFU.

    writer = MetricWriter(workdir, resume_step=step)   # process 0 writes; others no-op
    writer.write(step, {"train/loss": 1.2, ...})

`metrics.jsonl` has one JSON object per line with its `step`; on resume, lines after the
restored step (written before a crash, never checkpointed) are dropped so the file reads as
one uninterrupted run, and TensorBoard events after it are purged the same way. The workdir
may be a local path or a URL such as gs:// (through `etils.epath`).

Compute follows the paper (`reference.md` §6): training FLOPs = 6 N D (N parameters, D
tokens). MFU divides achieved FLOP/s by the devices' peak where it is known (bf16 dense).
"""

from __future__ import annotations

import json
import math
import os
import time
from typing import Any, Mapping

import jax
from etils import epath

from jaxrl_gen import chips, paths


def training_flops(num_params: int, tokens: float) -> float:
  """The paper's compute count for training on `tokens` tokens: 6 N D."""
  return 6.0 * num_params * tokens


def inference_flops(num_params: int, tokens: float) -> float:
  """The paper's compute count for forward passes over `tokens` tokens: 2 N D."""
  return 2.0 * num_params * tokens


def peak_flops(device: Any = None) -> float | None:
  """Dense bf16 peak FLOP/s of one device (`jaxrl_gen.chips`), None where unknown (CPUs)."""
  chip = chips.lookup((device or jax.devices()[0]).device_kind)
  return None if chip is None else chip.peak_flops


def mfu(flops_per_second: float, num_devices: int | None = None) -> float | None:
  """Model FLOPs utilisation over all devices, or None without a known peak."""
  peak = peak_flops()
  if peak is None:
    return None
  return flops_per_second / (peak * (num_devices or jax.device_count()))


class Throughput:
  """Tokens/s, FLOP/s and MFU over the steps since the last call to `rates`."""

  def __init__(self, num_params: int):
    self.num_params = num_params
    self.reset()

  def reset(self):
    self._start, self._tokens = time.perf_counter(), 0.0

  def add(self, tokens: float):
    self._tokens += tokens

  def rates(self) -> dict[str, float]:
    seconds = max(time.perf_counter() - self._start, 1e-9)
    flops = training_flops(self.num_params, self._tokens) / seconds
    out = {"tokens_per_second": self._tokens / seconds, "flops_per_second": flops}
    utilisation = mfu(flops)
    if utilisation is not None:
      out["mfu"] = utilisation
    self.reset()
    return out


class MetricWriter:
  """JSONL + TensorBoard, written by process 0 only."""

  def __init__(self, workdir: str, *, resume_step: int = 0, tensorboard: bool = True):
    self.enabled = jax.process_index() == 0
    self.path = str(epath.Path(workdir) / "metrics.jsonl")
    self._tb = None
    # The file's lines, for a remote path: an object store (gs://) cannot append, so each
    # write uploads the whole file again. That makes every record durable once `write`
    # returns, which resuming relies on (it keeps the records up to the restored step and
    # never writes them again); buffering until `close` would lose them to a preemption.
    self._lines: list[str] | None = None
    if not self.enabled:
      return
    epath.Path(workdir).mkdir(parents=True, exist_ok=True)
    lines = _truncate_after(self.path, resume_step)
    if not paths.is_local(self.path):
      self._lines = lines
    if tensorboard:
      from tensorboardX import SummaryWriter

      # tensorboardX takes the logdir string itself (gs:// needs google-cloud-storage).
      self._tb = SummaryWriter(str(epath.Path(workdir) / "tensorboard"),
                               purge_step=resume_step + 1 if resume_step else None)

  def write(self, step: int, values: Mapping[str, Any]):
    if not self.enabled:
      return
    values = {k: _number(v) for k, v in values.items()}
    line = json.dumps({"step": step, **values}, sort_keys=True) + "\n"
    if self._lines is None:
      with epath.Path(self.path).open("a") as f:
        f.write(line)
    else:
      self._lines.append(line)
      epath.Path(self.path).write_text("".join(self._lines))
    if self._tb is not None:
      for key, value in values.items():
        if isinstance(value, (int, float)) and math.isfinite(value):
          self._tb.add_scalar(key, value, step)

  def flush(self):
    if self._tb is not None:
      self._tb.flush()

  def close(self):
    if self._tb is not None:
      self._tb.close()


def read_jsonl(path: str | os.PathLike) -> list[dict]:
  """The records of a JSONL file (a local path or a URL such as gs://)."""
  with epath.Path(path).open("r") as f:
    return [json.loads(line) for line in f if line.strip()]


def _truncate_after(path: str, step: int) -> list[str]:
  """Drops records with `step` > `step` (a fresh run, step 0, starts an empty file); the lines
  kept."""
  if not epath.Path(path).exists():
    return []
  kept = [r for r in read_jsonl(path) if r.get("step", 0) <= step] if step else []
  lines = [json.dumps(r, sort_keys=True) + "\n" for r in kept]
  epath.Path(path).write_text("".join(lines))
  return lines


def _number(value: Any) -> Any:
  if hasattr(value, "item"):
    value = value.item()
  return float(value) if isinstance(value, float) else value


# The weight of the latest step in the bar's rate: an average over about the last 20 steps, so
# the ETA neither jumps with each step nor keeps the first (compiling) step's slowness.
SMOOTHING = 0.05


def progress(total: int, initial: int, enabled: bool = True, *, desc: str | None = None,
             unit: str = "step", job: "JobClock | None" = None):
  """A tqdm bar over `total` units (process 0, and only when `enabled`), redrawn as each unit
  ends, with a smoothed rate and ETA; `desc` labels it (e.g. 'phase 2/5 sft'). With `job`,
  the bar is one phase of a longer job and its label also shows the whole job's ETA."""
  from tqdm import tqdm

  bar = tqdm(total=total, initial=initial, desc=desc, unit=unit, miniters=1,
             smoothing=SMOOTHING, dynamic_ncols=True,
             disable=not enabled or jax.process_index() != 0)
  if job is not None:
    job.attach(bar, desc or "")
  return bar


class JobClock:
  """The ETA of a job made of phases (the experiment: pre-training, warm-up, branches, ...).

      job = JobClock([("pre-training", "sft", 600), ("warm-up", "sft", 100), ("rl", "rl", 20),
                      ...], priors={"sft": 0.4, "rl": 8.0})   # seconds a unit, rough
      job.phase("warm-up"); run_sft(..., job=job)              # its bar shows the job's ETA

  Each phase has a kind and a number of units (steps, updates, evaluations). The ETA is the
  remaining units of every phase times its kind's seconds a unit: measured on this machine as
  soon as a phase of that kind has run for a few seconds past its first unit (which compiles
  and is left out), the prior or the kind's last phase's rate before. `attach` hooks a
  phase's progress bar; each redraw then shows '[job 37% ETA 6:12]' after the phase's label.
  `units` may be revised (`plan`) once known, e.g. a branch whose length follows from
  another's FLOPs."""

  # Steps dispatched asynchronously finish in bursts (several in a blink, then a wait for the
  # next logged step): a rate measured over less time than this swings the ETA by minutes.
  RATE_WINDOW_S = 5.0

  def __init__(self, phases, priors):
    self.units = {name: float(units) for name, _, units in phases}
    self.kinds = {name: kind for name, kind, _ in phases}
    self.rates = {kind: float(seconds) for kind, seconds in priors.items()}
    self.done: dict[str, float] = dict.fromkeys(self.units, 0.0)
    self.current: str | None = None
    self.seconds: dict[str, float] = {}  # each phase's wall time in this process
    self._since = time.perf_counter()

  def plan(self, name: str, units: float):
    self.units[name] = float(units)

  def phase(self, name: str):
    """`name` runs now; the phase before it finished."""
    self.finish()
    self.current = name

  def finish(self):
    """The running phase finished."""
    now = time.perf_counter()
    if self.current is not None:
      self.done[self.current] = self.units[self.current]
      self.seconds[self.current] = self.seconds.get(self.current, 0.0) + now - self._since
    self.current, self._since = None, now

  def eta(self) -> float:
    """Seconds left for the whole job."""
    return sum(max(self.units[k] - self.done[k], 0.0) * self.rates.get(self.kinds[k], 0.0)
               for k in self.units)

  def describe(self) -> str:
    total = sum(self.units[k] * self.rates.get(self.kinds[k], 0.0) for k in self.units)
    left = self.eta()
    minutes, seconds = divmod(int(round(left)), 60)
    share = 100 * (1 - left / total) if total else 100.0
    return f"job {share:.0f}% ETA {minutes}:{seconds:02d}"

  def attach(self, bar, label: str):
    """Follows `bar` (the running phase's, over its units): the phase's done units, and its
    kind's seconds a unit once two units ran here."""
    name = self.current
    if name is None:
      return
    kind, first = self.kinds[name], None  # (time, units) when the first unit here ended
    update = bar.update

    def update_with_job(n=1):
      nonlocal first
      result = update(n)
      self.done[name] = float(bar.n)
      now = time.perf_counter()
      if first is None:
        first = (now, bar.n)
      elif bar.n > first[1] and now - first[0] >= self.RATE_WINDOW_S:
        self.rates[kind] = (now - first[0]) / (bar.n - first[1])
      bar.set_description_str(f"{label} [{self.describe()}]")
      return result

    self.done[name] = float(bar.n)
    bar.update = update_with_job
    bar.set_description_str(f"{label} [{self.describe()}]", refresh=False)

  def timed(self, name: str):
    """A context for a phase without a bar (e.g. an evaluation): its seconds measure its
    kind's rate, one unit."""
    clock = self

    class _Timed:
      def __enter__(self):
        clock.phase(name)
        self.started = time.perf_counter()

      def __exit__(self, *exc):
        seconds = time.perf_counter() - self.started
        if seconds > 1.0:  # not a cached result
          clock.rates[clock.kinds[name]] = seconds / max(clock.units[name], 1.0)
        clock.finish()
        return False

    return _Timed()
