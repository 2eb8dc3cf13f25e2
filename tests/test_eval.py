"""Evaluation: the benchmarks' settings, expert and scripted policies, sequential revision,
forced-fail steps, batch-size independence and the JSONL / StatLogger format."""

import dataclasses
import importlib.util
import json

import numpy as np
import pytest

from jaxrl_gen import eval as evaluation
from jaxrl_gen.envs import batch, core
from jaxrl_gen.envs import general_points as gp
from jaxrl_gen.envs.virl import synth

GARBAGE = '{"formula": "1+1"}'


def get_config(repo_root, name, arg):
  spec = importlib.util.spec_from_file_location(f"{name}_config", repo_root / "configs" / f"{name}.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg)


def gp_config(repo_root, arg="l", episodes=4, benchmarks="all"):
  config = get_config(repo_root, "gp", arg)
  config.env.resolution = 64
  config.eval.episodes = episodes
  config.eval.benchmarks = benchmarks
  return config


@pytest.fixture(scope="module")
def city(tmp_path_factory):
  directory = str(tmp_path_factory.mktemp("eval_city"))
  spec = synth.CitySpec(seed=8, grid=4, pano_width=32, num_routes=8, heldout_fraction=0.25)
  synth.write(directory, [synth.build_city(spec)], with_splits=True)
  return directory


def virl_config(repo_root, city, episodes=3):
  config = get_config(repo_root, "virl", "l")
  config.env.data_dir = city
  config.eval.visual_ood_data_dir = city
  config.eval.episodes = episodes
  config.eval.benchmarks = "id,rule_ood,visual_ood"
  return config


def expert_or(wrong_attempts):
  """Scripted: `wrong_attempts(state)` garbage answers first, then the expert's."""
  expert = evaluation.expert_policy("gp")
  return evaluation.ScriptedPolicy(
      lambda state, conv, params: GARBAGE if state.attempts < wrong_attempts(state)
      else expert.answer(state, conv, params))


def test_gp_benchmark_settings(repo_root):
  benches = {b.name: b for b in evaluation.benchmarks(gp_config(repo_root, "vl"))}
  assert list(benches) == list(gp.TASK.benchmarks)
  base = gp.EnvParams(language_only=False, color="black", resolution=64)
  assert benches["id"].params == base and benches["id"].seed == 42
  assert benches["rule_ood"].params == dataclasses.replace(base, face_cards_as_10=False, ood=True)
  assert benches["visual_ood"].params == dataclasses.replace(base, color="red")
  recognition = benches["recognition_rule_ood"].params
  assert (recognition.verification, recognition.verify_iter, recognition.ood) == (False, 1, True)
  assert [b.name for b in evaluation.benchmarks(gp_config(repo_root))] == ["id", "rule_ood"]
  with pytest.raises(ValueError, match="'visual_ood' needs the GP-VL variant"):
    evaluation.benchmarks(gp_config(repo_root, benchmarks="id,visual_ood"))
  with pytest.raises(ValueError, match="unknown gp benchmark 'ood'"):
    evaluation.benchmarks(gp_config(repo_root, benchmarks="ood"))
  config = gp_config(repo_root)
  config.eval.batch_size = 0
  with pytest.raises(ValueError, match=r"config\.eval\.batch_size=0"):
    evaluation.benchmarks(config)


def test_gp_expert_succeeds_on_every_benchmark(repo_root):
  results = evaluation.evaluate(evaluation.expert_policy("gp"), gp_config(repo_root, "vl"),
                                batch_size=3)
  assert list(results) == list(gp.TASK.benchmarks)
  for name, scores in results.items():
    assert scores["success"] == 1.0 and scores["success_stderr"] == 0.0, name
    assert scores["recognition_accuracy"] == 1.0 and scores["steps"] == scores["episodes"] == 4
  assert results["recognition_id"]["metric"] == "recognition_accuracy"


def test_virl_expert_completes_every_route(repo_root, city):
  results = evaluation.evaluate(evaluation.expert_policy("virl"), virl_config(repo_root, city),
                                batch_size=2)
  for name, scores in results.items():
    assert scores["route_success"] == 1.0 and scores["per_step_accuracy"] == 1.0, name
    assert scores["metric"] == "per_step_accuracy"
  assert results["id"]["episodes"] == 3 and results["visual_ood"]["episodes"] == 8  # all, ordered
  visual = evaluation.benchmark(virl_config(repo_root, city), "visual_ood")
  transitions = evaluation.run(evaluation.expert_policy("virl"), visual, batch_size=3)
  routes = [t.info["route_index"] for t in transitions if t.done]
  assert routes == list(range(8))  # route i is episode i, whatever the batch


def test_fail_twice_then_succeed_is_the_reference_conversation(repo_root):
  config = gp_config(repo_root, episodes=1, benchmarks="id")
  bench = evaluation.benchmark(config, "id")
  seen = []
  policy = expert_or(lambda state: 2)
  recording = evaluation.ScriptedPolicy(
      lambda state, conv, params: seen.append(conv) or policy.answer(state, conv, params))
  transitions = evaluation.run(recording, bench, batch_size=1)
  assert [t.attempt for t in transitions] == [0, 1, 2]
  state, first = gp.reset(batch.episode_key(42, 0), bench.params)
  wrong, message = gp.verify(GARBAGE, state.hand, bench.params)
  expert = gp.expert_answer(state.hand, bench.params)
  expected = [core.Turn("user", gp.prompt(state.hand, bench.params))]
  assert seen[0] == tuple(expected) == first
  for attempt in (1, 2):
    expected += [core.Turn("assistant", GARBAGE),
                 core.Turn("user", "You failed this trial because " + message)]
    assert seen[attempt] == tuple(expected)
  assert [(t.reward, t.terminated, t.truncated) for t in transitions] == [
      (wrong, False, False), (wrong, False, False), (5.0, True, False)]
  assert transitions[-1].answer == expert and transitions[0].message == message
  assert evaluation.score(bench, transitions)["success"] == 1.0


def test_forced_fail_step_and_truncation(repo_root):
  config = gp_config(repo_root, episodes=3, benchmarks="id")
  calls = []

  def random_policy(conversations, key):  # a model-style policy: conversations and a key
    calls.append(len(conversations))
    rng = np.random.default_rng(core.seed_from_key(key))
    return [f'{{"formula": "{rng.integers(100)}"}}' for _ in conversations]

  bench = evaluation.benchmark(config, "id")
  transitions = evaluation.run(random_policy, bench, batch_size=2)
  # The forced-fail step ignores its answer: the policy is not asked for it.
  assert max(calls) == 2 and len(transitions) == 3 * 6 and sum(calls) == 3 * 5
  for episode in range(3):
    steps = [t for t in transitions if t.episode == episode]
    assert [t.attempt for t in steps] == list(range(6))
    assert not any(t.done for t in steps[:5])
    last = steps[-1]
    assert (last.reward, last.terminated, last.truncated) == (-1.0, False, True)
    assert last.message == "step_limit_reached" and last.answer == ""
  assert evaluation.score(bench, transitions)["success"] == 0.0

  no_forced = dataclasses.replace(bench, params=dataclasses.replace(bench.params,
                                                                     forced_fail_step=False))
  transitions = evaluation.run(random_policy, no_forced, batch_size=2)
  assert len(transitions) == 3 * 5 and all(t.truncated for t in transitions if t.attempt == 4)
  recognition = evaluation.benchmark(gp_config(repo_root, "vl", 3), "recognition_id")
  transitions = evaluation.run(random_policy, recognition, batch_size=2)
  assert [(t.attempt, t.truncated) for t in transitions] == [(0, True)] * 3
  # No cards in these answers: every step is a recognition failure.
  assert evaluation.score(recognition, transitions)["recognition_accuracy"] == 0.0


@pytest.mark.parametrize("task", ["gp", "virl"])
def test_results_do_not_depend_on_batch_size(repo_root, city, tmp_path, task):
  if task == "gp":
    config = gp_config(repo_root, episodes=7, benchmarks="id,rule_ood")
    policy = expert_or(lambda state: sum(state.hand.numbers) % 3 * 3)  # 0, 3 or 6 (never) wrong
  else:
    config = virl_config(repo_root, city, episodes=4)
    expert = evaluation.expert_policy("virl")
    policy = evaluation.ScriptedPolicy(  # wrong once at every third rail point
        lambda state, conv, params: GARBAGE if state.position % 3 == 1 and not state.attempts
        else expert.answer(state, conv, params))
  logs = {}
  for size in (1, 3):
    results = evaluation.evaluate(policy, config, log_dir=str(tmp_path / str(size)), batch_size=size)
    logs[size] = {name: (tmp_path / str(size) / f"{name}.jsonl").read_text() for name in results}
  assert logs[1] == logs[3]
  if task == "gp":  # some episodes fail, some need revisions
    assert 0.0 < results["id"]["success"] < 1.0
    p, n = results["id"]["success"], results["id"]["episodes"]
    assert results["id"]["success_stderr"] == pytest.approx(np.sqrt(p * (1 - p) / n))
  else:
    assert 0.0 < results["id"]["per_step_accuracy"] < 1.0 and results["id"]["route_success"] == 1.0


def test_jsonl_log_format(repo_root, tmp_path):
  config = gp_config(repo_root, episodes=5, benchmarks="id")
  policy = expert_or(lambda state: state.hand.numbers[0] % 2 * 6)  # odd first card: always wrong
  results = evaluation.evaluate(policy, config, log_dir=str(tmp_path))
  records = [json.loads(line) for line in (tmp_path / "id.jsonl").read_text().splitlines()]
  steps = [r for r in records if "veri_step" in r]
  summaries = [r for r in records if "steps" in r and "veri_step" not in r]
  final = records[-1]
  assert all(set(r) == {"sample_id", "veri_step", "output", "reward", "info"} for r in steps)
  assert [r["sample_id"] for r in summaries] == list(range(5))
  assert len(steps) + len(summaries) + 1 == len(records) == results["id"]["steps"] + 5 + 1
  assert isinstance(steps[0]["info"]["Cards"], list) and "Verify Info" in steps[0]["info"]
  for summary in summaries:
    mine = [r for r in steps if r["sample_id"] == summary["sample_id"]]
    assert summary["reward"] == sum(r["reward"] for r in mine) and summary["steps"] == len(mine)
    assert summary["success"] == (mine[-1]["reward"] == 5.0)
  assert final["Step Number"] == len(steps) and final["Trajectory Number"] == 5
  assert final["Rates"]["CORRECT_SOLUTION"] == results["id"]["success"]
  assert sum(final["Counts"].values()) == len(steps)
  no_solution = sum(r["reward"] == -1.0 for r in steps)
  assert final["Rates"]["NO_SOLUTION"] == pytest.approx(no_solution / len(steps))
  flat = evaluation.flat_metrics(results)
  assert flat["eval/id/success"] == results["id"]["success"] and "eval/id/success_stderr" in flat
  table = evaluation.format_table(results)
  assert "success *" in table and f"{results['id']['success']:.4f}" in table


def test_stat_log_counts_unknown_rewards_as_aggregated_error():
  def step(episode, reward, done):
    return batch.Transition(episode, 0, 0, (), "", reward, done and reward == 5.0,
                            done and reward != 5.0, None, {})

  transitions = [step(0, -5.0, False), step(0, 5.0, True), step(1, -1.0, False),
                 step(1, 0.0, False), step(1, -1.0, True)]  # -5, 0: the legacy table's sums
  log = evaluation.stat_log("gp", transitions)
  assert log["Step Number"] == 5 and log["Trajectory Number"] == 2
  assert log["Counts"] == {"AGGREGATED_ERROR": 2, "CORRECT_SOLUTION": 1, "NO_SOLUTION": 2}
  assert log["Rates"] == {"AGGREGATED_ERROR": 0.4, "CORRECT_SOLUTION": 0.5, "NO_SOLUTION": 0.4}
  virl_log = evaluation.stat_log("virl", [dataclasses.replace(t, info={"is_success": True})
                                          for t in transitions])
  assert virl_log["Counts"]["INCORRECT_ACTION"] == 2 and virl_log["Counts"]["AGGREGATED_ERROR"] == 3
  assert virl_log["Rates"]["CORRECT_SOLUTION"] == 1.0  # both routes ended successfully


@pytest.mark.parametrize("answers, expected", [
    # unparseable (no formula field), parseable but wrong (numbers), then solved
    (("hello", GARBAGE, None), dict(success=1.0, first_attempt_success=0.0,
                                    parse_rate=2 / 3, parse_rate_first=0.0, steps=3)),
    # never parseable: 5 graded attempts, the forced-fail step is not graded
    (("hello",) * 6, dict(success=0.0, first_attempt_success=0.0, parse_rate=0.0,
                          parse_rate_first=0.0, steps=6)),
    ((None,), dict(success=1.0, first_attempt_success=1.0, parse_rate=1.0,
                   parse_rate_first=1.0, steps=1)),
])
def test_parse_rates_and_first_attempt_success(repo_root, answers, expected):
  config = gp_config(repo_root, episodes=3, benchmarks="id")
  expert = evaluation.expert_policy("gp")
  policy = evaluation.ScriptedPolicy(  # None: the expert's answer
      lambda state, conv, params: answers[state.attempts] or expert.answer(state, conv, params))
  scores = evaluation.evaluate(policy, config)["id"]
  expected = dict(expected)
  steps = expected.pop("steps")
  assert scores["steps"] == 3 * steps and scores["episodes"] == 3
  assert {k: scores[k] for k in expected} == pytest.approx(expected)
  graded = 3 * min(steps, 5)
  p = expected["parse_rate"]
  assert scores["parse_rate_stderr"] == pytest.approx(np.sqrt(p * (1 - p) / graded))
  assert "parse_rate_first" in evaluation.format_table({"id": scores})


def test_per_hand_outcomes_pair_across_evaluations(repo_root, tmp_path):
  """Two evaluations under one config (two phases of a run) log the same hands in the same
  order, each with its cards, success and graded attempts; `outcomes` reads every evaluation
  seed's log and `paired` aligns them."""
  config = gp_config(repo_root, episodes=6, benchmarks="id,rule_ood")
  config.eval.seeds, config.eval.verify_iter = 2, 3
  weaker = expert_or(lambda state: sum(state.hand.values) % 4)  # 3 wrong: the budget is spent
  evaluation.evaluate(weaker, config, log_dir=str(tmp_path / "init"))
  evaluation.evaluate(evaluation.expert_policy("gp"), config, log_dir=str(tmp_path / "rl"))
  assert (tmp_path / "init" / "rule_ood.seed1.jsonl").exists()
  for name in ("id", "rule_ood"):
    init = evaluation.outcomes(str(tmp_path / "init"), name)
    rl = evaluation.outcomes(str(tmp_path / "rl"), name)
    assert [(r["eval_seed"], r["sample_id"]) for r in init] == [
        (j, i) for j in range(2) for i in range(6)]
    assert [r["hand"] for r in init] == [r["hand"] for r in rl]
    assert len({r["hand"] for r in init}) == 12  # the second seed deals other hands
    steps = [json.loads(line) for line in (tmp_path / "init" / f"{name}.jsonl").open()
             if '"veri_step"' in line]
    assert init[0]["hand"] == "-".join(steps[0]["info"]["Cards"])
    wrong = [sum(gp.Hand.from_cards(r["hand"].split("-")).values) % 4 for r in init]
    assert [r["attempts"] for r in init] == [min(k + 1, 3) for k in wrong]
    assert [r["steps"] for r in init] == [k + 1 for k in wrong]  # the forced-fail step: 4
    assert [r["success"] for r in init] == [k < 3 for k in wrong]
    assert all(r["success"] and r["attempts"] == 1 for r in rl)
    a, b = evaluation.paired(init, rl)
    assert list(a) == [float(k < 3) for k in wrong] and list(b) == [1.0] * 12
    assert 0 < a.sum() < 12
  with pytest.raises(ValueError, match="hand"):
    evaluation.paired(init, [dict(r, hand="SA-SA-SA-SA") for r in rl])
  with pytest.raises(ValueError, match="same order"):
    evaluation.paired(init, rl[:6])
  with pytest.raises(FileNotFoundError, match="visual_ood"):
    evaluation.outcomes(str(tmp_path / "init"), "visual_ood")


def test_outcomes_refuse_an_unfinished_log(repo_root, tmp_path):
  config = gp_config(repo_root, episodes=3, benchmarks="id")
  evaluation.evaluate(evaluation.expert_policy("gp"), config, log_dir=str(tmp_path))
  path = tmp_path / "id.jsonl"
  path.write_text("".join(path.read_text().splitlines(keepends=True)[:-1]))
  with pytest.raises(ValueError, match="did not finish"):
    evaluation.outcomes(str(tmp_path), "id")


def test_virl_outcomes_name_routes_and_count_graded_attempts(repo_root, city, tmp_path):
  config = virl_config(repo_root, city, episodes=4)
  config.eval.benchmarks = "id"
  expert = evaluation.expert_policy("virl")
  policy = evaluation.ScriptedPolicy(  # always wrong at the second rail point: the route fails
      lambda state, conv, params: GARBAGE if state.position == 1 else expert.answer(
          state, conv, params))
  evaluation.evaluate(policy, config, log_dir=str(tmp_path))
  records = [json.loads(line) for line in (tmp_path / "id.jsonl").open()]
  routes = {r["sample_id"]: r["info"]["route_index"] for r in records if "veri_step" in r}
  outcomes = evaluation.outcomes(str(tmp_path), "id")
  assert [r["hand"] for r in outcomes] == [f"route{routes[i]}" for i in range(4)]
  # Rail point 0 right once, rail point 1 wrong twice (the budget), then the forced -1 step.
  assert [(r["attempts"], r["steps"], r["success"]) for r in outcomes] == [(3, 4, False)] * 4
