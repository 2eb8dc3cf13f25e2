"""The lock-step episode driver: slots, resets from the episode stream, idle slots, payloads."""

import pytest

from jaxrl_gen.envs import batch
from jaxrl_gen.envs import general_points as gp

PARAMS = gp.EnvParams(verify_iter=2)
WRONG = '{"formula": "1+1"}'


def test_slots_reset_from_the_stream_and_go_idle():
  stream = batch.EpisodeStream(seed=42)
  runner = batch.LockstepEpisodes(gp, PARAMS, 3, stream, num_episodes=4)
  assert runner.active == [0, 1, 2] and runner.next_episode == 3
  hands = [state.hand for state in runner.states()]
  assert hands == [gp.reset(batch.episode_key(42, i), PARAMS)[0].hand for i in range(3)]
  # Slot 1 solves its hand; the others fail: slot 1 starts episode 3, the stream's last.
  answers = [WRONG, gp.expert_answer(hands[1], PARAMS), WRONG]
  turn = runner.step(answers, payloads=["a", "b", "c"])
  assert [(t.slot, t.episode, t.attempt, t.payload) for t in turn] == [
      (0, 0, 0, "a"), (1, 1, 0, "b"), (2, 2, 0, "c")]
  assert turn[1].terminated and turn[1].reward == 5.0 and turn[1].answer == answers[1]
  assert turn[0].prompt[0].text == gp.prompt(hands[0], PARAMS)
  assert turn[0].message == turn[0].info["Verify Info"] and not turn[0].done
  assert runner.states()[1].hand == gp.reset(batch.episode_key(42, 3), PARAMS)[0].hand
  steps = turn
  while not runner.done:
    steps += runner.step([WRONG] * len(runner.active))
  assert sorted({t.episode for t in steps}) == [0, 1, 2, 3]
  assert [t.attempt for t in steps if t.episode == 3] == [0, 1, 2]  # 2 graded + forced fail
  assert runner.conversations() == [] and runner.next_episode == 4


def test_training_stream_is_endless_and_distinct_from_evaluation():
  runner = batch.LockstepEpisodes(gp, PARAMS, 2, batch.EpisodeStream(seed=42, stream=0))
  for _ in range(9):  # three-step episodes: every slot keeps going, episodes keep counting
    turn = runner.step([WRONG, WRONG])
    assert len(turn) == 2
  assert runner.active == [0, 1] and runner.next_episode == 8
  eval_hand = gp.reset(batch.episode_key(42, 0), PARAMS)[0].hand
  train_hand = gp.reset(batch.episode_key(42, 0, stream=0), PARAMS)[0].hand
  assert list(batch.episode_key(42, 0, stream=0)) == [42, 0, 0]
  assert train_hand != eval_hand


def test_bad_calls():
  runner = batch.LockstepEpisodes(gp, PARAMS, 2, batch.EpisodeStream(seed=1), num_episodes=1)
  assert runner.active == [0]  # one episode for two slots: the second is idle from the start
  with pytest.raises(ValueError, match="2 answers for 1 active episodes"):
    runner.step([WRONG, WRONG])
  with pytest.raises(ValueError, match="num_slots=0"):
    batch.LockstepEpisodes(gp, PARAMS, 0, batch.EpisodeStream(seed=1))
