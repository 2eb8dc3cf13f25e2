"""The V-IRL environment end to end on a synthetic city written in the published layout:
loader round trip, expert and wrong policies, budget semantics, determinism, the pickle
converter, and the synthetic panoramas' signs."""

import collections
import dataclasses
import json
import os
import pickle

import numpy as np
import pytest

from jaxrl_gen import eval as evaluation
from jaxrl_gen.envs import core, virl
from jaxrl_gen.envs.virl import (geo, mapping, projection, prompts, rails, routes, synth,
                                 verifier, views)

SPEC = synth.CitySpec(seed=5, grid=4, pano_width=128, num_routes=12, heldout_fraction=0.25)


@pytest.fixture(scope="module")
def city_dir(tmp_path_factory):
  directory = str(tmp_path_factory.mktemp("virl_city"))
  synth.write(directory, [synth.build_city(SPEC)], with_splits=True)
  return directory


@pytest.fixture
def params(city_dir):
  return virl.EnvParams(data_dir=city_dir, route_split="all")


def _answer(observation, action):
  return prompts.response(observation, "Turn left to face north.", action)


def _expert_run(params, episodes, seed, ordered=False):
  """The expert's transitions and scores on `episodes` episodes of these env settings."""
  bench = core.Benchmark("expert", "virl", params, episodes, seed, ordered)
  transitions = evaluation.run(evaluation.expert_policy("virl"), bench, batch_size=4)
  return transitions, evaluation.score(bench, transitions)


def test_published_layout_round_trip_and_expert_reaches_every_route(city_dir, params):
  assert sorted(os.listdir(city_dir)) == ["gps_pano_mapping.json", "route_infos.json",
                                          "splits.json", "street_views"]
  with open(os.path.join(city_dir, "route_infos.json")) as f:
    data = json.load(f)
  assert isinstance(data, list) and len(data[0]) == data[1] == 12
  assert {"start_place", "dest_place", "route_results", "milestone_info", "init_heading"} <= set(
      data[0][0])
  pano_id = mapping.read_json(os.path.join(city_dir, "gps_pano_mapping.json"))[0][2]
  with open(os.path.join(city_dir, "street_views", pano_id + ".metadata.json")) as f:
    assert isinstance(json.load(f)["rotation"], float)

  assert len(virl.env.load(params).split("all")) == 12
  transitions, scores = _expert_run(params, 12, seed=0, ordered=True)
  assert scores["episodes"] == 12 and scores["route_success"] == 1.0
  assert scores["per_step_accuracy"] == 1.0
  assert [t.info["route_index"] for t in transitions if t.done] == list(range(12))
  lengths = collections.Counter(t.episode for t in transitions)
  assert len(set(lengths.values())) > 3  # rails differ in length

  vision = dataclasses.replace(params, language_only=False, view_size=24, resolution=20)
  assert _expert_run(vision, 2, seed=1)[1]["route_success"] == 1.0
  state, obs = virl.reset(0, vision)
  assert obs[0].image.size == (45, 45) and "You observe an image of 4 views" in obs[0].text
  assert virl.reset(0, params)[1][0].image is None


def test_a_wrong_policy_gets_the_reference_reward_sequence(params):
  state, obs = virl.reset(3, params)
  assert state.point.action.startswith("turn_direction(")  # the start: turn towards leg 1
  answer = _answer("No landmarks nearby; ", "forward()")
  incorrect = verifier.MESSAGES[verifier.INCORRECT_ACTION]
  state, obs, reward, terminated, truncated, info = virl.step(state, answer, params)
  assert (reward, terminated, truncated, info["Verify Info"]) == (-1.0, False, False, incorrect)
  assert [t.role for t in obs] == ["user", "assistant", "user"]
  assert obs[1].text == answer and obs[2].text == core.FEEDBACK_PREFIX + incorrect
  state, obs, reward, terminated, truncated, info = virl.step(state, answer, params)
  assert (reward, terminated, truncated) == (-1.0, False, False) and len(obs) == 5
  # The budget is spent: the third answer is not read, it is graded -1 and truncates.
  state, obs, reward, terminated, truncated, info = virl.step(state, virl.expert_answer(
      state, params), params)
  assert (reward, terminated, truncated) == (-1.0, False, True)
  assert info["Verify Info"] == "Exceed maximum verify steps" and not info["is_success"]
  with pytest.raises(ValueError, match="finished episode"):
    virl.step(state, answer, params)

  # Without the forced-fail step the second wrong answer truncates.
  quick = dataclasses.replace(params, forced_fail_step=False)
  state, _ = virl.reset(3, quick)
  rewards = []
  for _ in range(2):
    state, _, reward, terminated, truncated, _ = virl.step(state, answer, quick)
    rewards.append(reward)
  assert rewards == [-1.0, -1.0] and truncated and not terminated and not state.is_success


def _walk_to_stop(state, params):
  rewards = []
  while state.point.action != rails.STOP:
    state, _, reward, terminated, truncated, _ = virl.step(
        state, virl.expert_answer(state, params), params)
    rewards.append(reward)
    assert not (terminated or truncated)
  return state, rewards


def test_failing_at_the_destination_terminates_and_truncates(params):
  state, _ = virl.reset(4, params)
  state, rewards = _walk_to_stop(state, params)
  assert rewards == [1.0] * len(rewards) and state.is_success
  claim = _answer("I observe an intersection", "forward()")
  outcomes = []
  for _ in range(3):
    state, _, reward, terminated, truncated, info = virl.step(state, claim, params)
    outcomes.append((reward, terminated, truncated))
  assert outcomes == [(-1.5, False, False), (-1.5, False, False), (-1.0, True, True)]
  assert info["Verify Info"] == "Exceed maximum verify steps" and not state.is_success


def test_retries_within_budget_still_succeed_and_count_in_accuracy(params):
  def one_mistake_each(state, conversation, params):
    if state.attempts == 0:
      return _answer("No landmarks nearby; ", "turn_direction(up)")
    return virl.expert_answer(state, params)
  bench = core.Benchmark("retries", "virl", params, 1, 7)
  transitions = evaluation.run(evaluation.ScriptedPolicy(one_mistake_each), bench, batch_size=1)
  rewards = [t.reward for t in transitions]
  assert set(rewards[0::2]) == {-1.0, -1.5} and set(rewards[1::2]) == {1.0}
  scores = evaluation.score(bench, transitions)
  assert scores["per_step_accuracy"] == 0.5 and scores["route_success"] == 1.0
  # The same route again, failed at its end: one success in two episodes.
  failed = [dataclasses.replace(t, episode=1) for t in transitions]
  failed[-1] = dataclasses.replace(failed[-1], info={**failed[-1].info, "is_success": False})
  assert evaluation.score(bench, transitions + failed)["route_success"] == 0.5


def test_intersection_claims_against_the_full_or_legacy_ground_truth(params):
  params = dataclasses.replace(params, drop_rate=0.0)
  legacy = dataclasses.replace(params, legacy_intersection_check=True)
  state, _ = virl.reset(11, params)
  while state.point.action != "forward()":
    state, *_ = virl.step(state, virl.expert_answer(state, params), params)
  claim = _answer("You observe an intersection", "stop()")
  _, _, reward, _, _, info = virl.step(state, claim, params)
  assert reward == -1.5 and info["Verify Info"].startswith("you are not at any intersection.")
  while "intersection" not in state.point.observation:
    state, *_ = virl.step(state, virl.expert_answer(state, params), params)
  silent = _answer(state.point.landmark, "forward()")
  claims = _answer("You observe an intersection", "forward()")
  _, _, reward, _, _, info = virl.step(state, silent, params)
  assert reward == -1.5 and info["Verify Info"].startswith("you are at an intersection.")
  assert virl.step(state, claims, params)[2] == -1.0
  # The reference compared with the landmark text: a claim is penalised even here.
  assert virl.step(state, silent, legacy)[2] == -1.0
  assert virl.step(state, claims, legacy)[2] == -1.5


def test_a_correct_move_gives_a_fresh_prompt_with_the_history(params):
  state, obs = virl.reset(2, params)
  first_action = state.point.action
  state, obs, reward, terminated, truncated, info = virl.step(
      state, virl.expert_answer(state, params), params)
  assert reward == 1.0 and len(obs) == 1 and obs[0].role == "user"
  assert obs[0].text == virl.prompt(state, params)
  assert f"O_1: No landmarks nearby; \nA_1: {first_action}\nO_2: " in obs[0].text
  assert info["obs_act_seq"].endswith("A_2: \n") and info["gt_action"] == state.point.action
  assert info["Verify Info"] == "Correct action." and info["global_instruction"] in obs[0].text


def test_instruction_idx_is_0_after_reset_then_counts_from_1(params):
  # The reference's reset reports its own counter (0); each step reports the rail point's.
  state, _ = virl.reset(2, params)
  assert virl.info(state, params)["instruction_idx"] == 0
  state, *_, info = virl.step(state, _answer("", "stop()"), params)  # wrong: same point
  assert info["instruction_idx"] == 1
  state, *_, info = virl.step(state, virl.expert_answer(state, params), params)
  assert info["instruction_idx"] == state.point.instruction + 1 >= 1


def test_reset_is_deterministic_per_key_and_draws_from_the_split(city_dir, params):
  a, _ = virl.reset(np.array([9, 1], np.uint32), params)
  b, _ = virl.reset(np.array([9, 1], np.uint32), params)
  assert a == b and a.conversation[0].text == b.conversation[0].text
  states = [virl.reset(k, params)[0] for k in range(40)]
  assert len({(s.route_index, s.plan) for s in states}) > 20
  with open(os.path.join(city_dir, "splits.json")) as f:
    splits = json.load(f)
  for split in ("train", "heldout"):
    chosen = {virl.reset(k, dataclasses.replace(params, route_split=split))[0].route_index
              for k in range(40)}
    assert chosen <= set(splits[split]) and len(chosen) > 1
  # Routes without an initial heading get a random one; ordered resets pick the i-th route.
  no_heading = [i for i, r in enumerate(virl.env.load(params).routes) if r.init_heading == 0]
  headings = {virl.reset(k, params, no_heading[0])[0].plan.rail[0].heading for k in range(10)}
  assert len(headings) > 5
  assert virl.reset(0, params, 5)[0].route_index == 5
  with pytest.raises(ValueError, match="route_index=12"):
    virl.reset(0, params, 12)


def test_pickle_mapping_needs_an_explicit_trust_flag(tmp_path, city_dir):
  entries = mapping.read_json(os.path.join(city_dir, "gps_pano_mapping.json"))
  pkl, out = str(tmp_path / "gps_pano_mapping.pkl"), str(tmp_path / "gps_pano_mapping.json")
  with open(pkl, "wb") as f:
    pickle.dump({(np.float64(lat), lng): pano for lat, lng, pano in entries}, f)
  with pytest.raises(ValueError, match="refusing to unpickle"):
    mapping.convert_pickle(pkl, out)
  assert not os.path.exists(out)
  assert mapping.main([pkl, out]) == 2 and not os.path.exists(out)
  assert mapping.main([pkl, out, "--trust-pickle"]) == 0
  assert mapping.read_json(out) == entries

  class Exploit:
    def __reduce__(self):
      return (os.system, ("touch " + str(tmp_path / "PWNED"),))
  with open(pkl, "wb") as f:
    pickle.dump({(1.0, 2.0): Exploit()}, f)
  with pytest.raises(ValueError, match="refusing to load global"):
    mapping.convert_pickle(pkl, out, trust=True)
  assert not (tmp_path / "PWNED").exists()


def test_loader_errors_name_the_problem(tmp_path, city_dir):
  with pytest.raises(ValueError, match="missing route_infos.json, gps_pano_mapping.json"):
    virl.reset(0, virl.EnvParams(data_dir=str(tmp_path)))
  for name in ("route_infos.json", "splits.json"):
    os.link(os.path.join(city_dir, name), tmp_path / name)
  (tmp_path / "gps_pano_mapping.pkl").write_bytes(b"")
  with pytest.raises(ValueError, match="--trust-pickle"):
    virl.reset(0, virl.EnvParams(data_dir=str(tmp_path)))
  os.link(os.path.join(city_dir, "gps_pano_mapping.json"), tmp_path / "gps_pano_mapping.json")
  os.remove(tmp_path / "splits.json")
  with pytest.raises(ValueError, match="route_split='all'"):
    virl.reset(0, virl.EnvParams(data_dir=str(tmp_path)))
  state, _ = virl.reset(0, virl.EnvParams(data_dir=str(tmp_path), route_split="all"))
  with pytest.raises(ValueError, match="cannot read panorama"):
    virl.render(state, virl.EnvParams(data_dir=str(tmp_path), route_split="all"))


@pytest.mark.parametrize("field, value", [
    ("verify_iter", 0), ("drop_rate", 1.5), ("snap_radius", 0.0), ("action_space", "polar"),
    ("route_split", "test"), ("synthetic", "moon"), ("view_headings", (0, 90, 180)),
    ("interpolation", "nearest"), ("language_only", "yes"), ("resolution", 0), ("fov", 180.0),
    ("straight_line_length", 2.5),
])
def test_params_are_validated_with_the_field_named(field, value):
  with pytest.raises(ValueError, match=f"^{field}="):
    virl.EnvParams(**{field: value})


def test_signs_appear_at_the_landmarks_true_bearing(city_dir):
  city = synth.build_city(SPEC)
  checked = 0
  for landmark in city.landmarks[:4]:
    pano = city.panos[city.node_pano[landmark.node]]
    image, rotation = views.load_pano(*routes.pano_paths(city_dir, pano.pano_id))
    bearing = geo.bearing(pano.latlng, landmark.latlng)
    toward, away = projection.perspective(image, [bearing, bearing + 180], rotation,
                                               size=64, fov=90)
    # The sign spans ~3-24 degrees above the horizon at 10 m: rows 20..30 of a 64 px view.
    def share(view):
      box = view[19:28, 26:38].reshape(-1, 3).astype(int)
      return (np.abs(box - np.asarray(landmark.color)).sum(axis=1) < 90).mean()
    assert share(toward) > 0.4 and share(away) < 0.05, landmark
    checked += 1
  assert checked == 4


def test_synthetic_data_sets_are_generated_once_and_deterministic(tmp_path, monkeypatch,
                                                                   capsys):
  tiny = [dataclasses.replace(SPEC, pano_width=32, num_routes=3, name=f"t{i}",
                              style=s) for i, s in enumerate(("day", "night"))]
  monkeypatch.setattr(synth, "specs", lambda kind, seed: tiny)
  first = synth.ensure("mini", 1, str(tmp_path / "a"))
  # The first use says what it builds and where, in one line; later ones say nothing.
  assert capsys.readouterr().err == (f"building the synthetic V-IRL data set 'mini' into {first}"
                                     " (first use: about 20 s and 20 MB)\n")
  again = synth.ensure.__wrapped__("mini", 1, str(tmp_path / "a"))
  assert capsys.readouterr().err == ""
  other = synth.ensure("mini", 1, str(tmp_path / "b"))
  assert first == again and os.path.basename(first) == os.path.basename(other)
  some_pano = os.path.join("street_views", mapping.read_json(
      os.path.join(first, "gps_pano_mapping.json"))[-1][2] + ".jpg")
  for name in ("route_infos.json", "gps_pano_mapping.json", some_pano):
    with open(os.path.join(first, name), "rb") as f, open(os.path.join(other, name), "rb") as g:
      assert f.read() == g.read()
  assert not os.path.exists(os.path.join(first, "splits.json"))
  assert sorted(os.listdir(tmp_path / "a")) == [os.path.basename(first)]  # no scratch left
  params = virl.EnvParams(synthetic="mini", synthetic_seed=1, cache_dir=str(tmp_path / "a"),
                          route_split="all")
  assert virl.data_dir(params) == first
  assert len(virl.env.load(params).split("all")) == 6
  assert _expert_run(params, 6, seed=12, ordered=True)[1]["route_success"] == 1.0
