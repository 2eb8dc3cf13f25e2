"""Evaluation that stops part-way resumes: each finished episode is in the JSONL as soon as it
ends, and the same evaluation run again skips the logged episodes and ends with the results
and logs of a run never interrupted (scripted episodes of uneven length, and `jaxrl-gen
eval`'s results.json for a sampling random model)."""

import importlib.util
import json
import pathlib

import pytest

from jaxrl_gen import eval as evaluation
from jaxrl_gen.commands import eval as eval_command

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
GARBAGE = '{"formula": "1+1"}'


class Stopped(Exception):
  """The interruption (a kill, a preemption) of the first run."""


def gp_config(arg: str, episodes: int, verify_iter: int):
  spec = importlib.util.spec_from_file_location("gp_config", REPO_ROOT / "configs" / "gp.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config(arg)
  config.eval.episodes, config.eval.verify_iter, config.eval.batch_size = episodes, verify_iter, 3
  return config


def scripted(stop_after: int | None = None):
  """(policy, answers given): GP answers wrong until an attempt that depends on the hand, so
  episodes end at different turns; with `stop_after`, raises `Stopped` at that answer."""
  expert, answered = evaluation.expert_policy("gp"), []

  def answer(state, conversation, params):
    if len(answered) == stop_after:
      raise Stopped
    answered.append(state.hand.cards)
    if state.attempts < sum(state.hand.values) % 4:
      return GARBAGE
    return expert.answer(state, conversation, params)
  return evaluation.ScriptedPolicy(answer), answered


def logs(log_dir: pathlib.Path) -> dict[str, str]:
  return {p.name: p.read_text() for p in sorted(log_dir.glob("*.jsonl"))}


def test_a_stopped_scripted_evaluation_resumes_where_it_stopped(tmp_path):
  config = gp_config("l,eval,tiny-text", episodes=10, verify_iter=3)
  policy, answered = scripted()
  expected = evaluation.evaluate(policy, config, log_dir=str(tmp_path / "whole"),
                                 resume="scripted")
  total = len(answered)

  stopping, _ = scripted(stop_after=total * 3 // 4)  # in the second benchmark, rule_ood
  with pytest.raises(Stopped):
    evaluation.evaluate(stopping, config, log_dir=str(tmp_path / "parts"), resume="scripted")
  assert (tmp_path / "parts" / "id.jsonl").read_text() == (
      tmp_path / "whole" / "id.jsonl").read_text()
  logged = [json.loads(line) for line in (tmp_path / "parts" / "rule_ood.jsonl").read_text()
            .splitlines()]
  finished = [r for r in logged if "steps" in r]
  assert finished and len(finished) < config.eval.episodes  # written as they ended
  assert sum("veri_step" in r for r in logged) == sum(r["steps"] for r in finished)
  state = json.loads((tmp_path / "parts" / "rule_ood.resume.json").read_text())
  assert state["in_flight"]  # episodes of several turns were under way
  id_steps = (tmp_path / "whole" / "id.jsonl").read_text().count('"veri_step"')
  done_before = id_steps + sum(r["steps"] for r in finished) + len(state["in_flight"])

  policy, answered = scripted()
  results = evaluation.evaluate(policy, config, log_dir=str(tmp_path / "parts"),
                                resume="scripted")
  assert results == expected
  assert logs(tmp_path / "parts") == logs(tmp_path / "whole")
  assert len(answered) == total - done_before  # nothing logged or in flight was answered again

  policy, answered = scripted()  # a finished evaluation run again answers nothing
  assert evaluation.evaluate(policy, config, log_dir=str(tmp_path / "parts"),
                             resume="scripted") == expected
  assert not answered


def test_other_settings_start_again(tmp_path):
  config = gp_config("l,eval,tiny-text", episodes=4, verify_iter=2)
  stopping, _ = scripted(stop_after=3)
  with pytest.raises(Stopped):
    evaluation.evaluate(stopping, config, log_dir=str(tmp_path), resume="scripted")
  policy, answered = scripted()
  evaluation.evaluate(policy, config, log_dir=str(tmp_path), resume="another policy")
  whole, all_answers = scripted()
  evaluation.evaluate(whole, config, log_dir=str(tmp_path / "whole"))
  assert len(answered) == len(all_answers)


class StoppingPolicy:
  """A model policy that raises `Stopped` at its `stop_after`-th call."""

  def __init__(self, policy, stop_after: int):
    self.policy, self.calls, self.stop_after = policy, 0, stop_after
    self.sampling_kwargs = policy.sampling_kwargs

  def __call__(self, conversations, key):
    self.calls += 1
    if self.calls > self.stop_after:
      raise Stopped
    return self.policy(conversations, key)


def test_eval_command_resumes_a_random_models_evaluation(tmp_path):
  config = gp_config("l,eval,tiny-text", episodes=5, verify_iter=2)
  config.eval.benchmarks = "id"
  config.sampling.max_new_tokens, config.sampling.temperature = 4, 1.0
  benches, policy = eval_command.prepare(config, None)
  whole = StoppingPolicy(policy, 100)
  eval_command.run(config, None, benches, whole, str(tmp_path / "whole"))

  with pytest.raises(Stopped):
    eval_command.run(config, None, benches, StoppingPolicy(policy, 3), str(tmp_path / "parts"))
  counting = StoppingPolicy(policy, 100)
  eval_command.run(config, None, benches, counting, str(tmp_path / "parts"))
  results = [json.loads((tmp_path / d / "eval" / "results.json").read_text())
             for d in ("whole", "parts")]
  assert results[1] == results[0]
  assert logs(tmp_path / "parts" / "eval") == logs(tmp_path / "whole" / "eval")
  assert counting.calls == whole.calls - 3  # the turns taken before the stop are not again
