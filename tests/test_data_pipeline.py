"""The grain pipeline: batches, masks, buckets, per-host shares, exact iterator resume."""

import numpy as np
import pytest

from jaxrl_gen.data import expert_tfds, experts, pipeline
from jaxrl_gen.envs import general_points as gp
from jaxrl_gen.text import processor as processor_lib

GP_L = gp.EnvParams()
GP_VL = gp.EnvParams(language_only=False, color="black", resolution=96)


@pytest.fixture(scope="module")
def proc():
  return processor_lib.Processor.create("", image_size=56, max_tiles=4)


def _records(params, n):
  return [p for i in range(n) for p in experts.episode_pairs("gp", params, {}, 0, 0, i)]


def _to_conversation(pair):
  return pair.conversation()


def _dataset(proc, records, **kw):
  args = dict(batch_size=4, seed=0, max_length=512)
  args.update(kw)
  return pipeline.sft_dataset(records, _to_conversation, proc, **args)


def test_batch_rows_are_the_encoded_examples(proc):
  records = _records(GP_L, 8)
  batch = _dataset(proc, records, shuffle=False, num_epochs=1)[0]
  assert set(batch) == {"input_ids", "attention_mask", "loss_mask"}
  length = batch["input_ids"].shape[1]
  assert length in pipeline.buckets_for(512) and batch["input_ids"].dtype == np.int32
  longest = batch["attention_mask"].sum(1).max()
  assert pipeline.buckets_for(512)[pipeline.buckets_for(512).index(length) - 1] < longest <= length
  for row, pair in enumerate(records[:4]):
    example = proc.encode_sft(pair.conversation())
    n = len(example.ids)
    np.testing.assert_array_equal(batch["input_ids"][row, :n], example.ids)
    assert (batch["input_ids"][row, n:] == proc.ids.pad).all()
    np.testing.assert_array_equal(batch["attention_mask"][row], np.arange(length) < n)
    np.testing.assert_array_equal(batch["loss_mask"][row, :n], example.loss_mask)
    assert batch["loss_mask"][row, n:].sum() == 0
    assert proc.tokenizer.decode(batch["input_ids"][row][batch["loss_mask"][row] == 1]) == (
        pair.response + "<|eot_id|>")


def test_image_batches(proc):
  records = _records(GP_VL, 3)
  batch = _dataset(proc, records, shuffle=False, num_epochs=1, max_images=1, image_size=56,
                   drop_remainder=False)[0]
  length = batch["input_ids"].shape[1]
  assert batch["pixel_values"].shape == (4, 1, 4, 3, 56, 56)
  assert batch["cross_attention_mask"].shape == (4, length, 1, 4)
  arrays = proc.image_inputs([[records[0].image]], [proc.encode_sft(records[0].conversation()).ids])
  np.testing.assert_array_equal(batch["pixel_values"][0], arrays["pixel_values"][0])
  n = batch["attention_mask"][0].sum()
  np.testing.assert_array_equal(batch["cross_attention_mask"][0, :n],
                                arrays["cross_attention_mask"][0])
  # The fourth row is padding: no tokens, no loss, no image.
  assert batch["attention_mask"][3].sum() == batch["loss_mask"][3].sum() == 0
  assert batch["pixel_values"][3].sum() == 0 and batch["cross_attention_mask"][3].sum() == 0


def test_truncation_and_buckets(proc):
  assert pipeline.buckets_for(300) == (128, 256, 300)
  batch = _dataset(proc, _records(GP_L, 4), max_length=100, shuffle=False)[0]
  assert batch["input_ids"].shape == (4, 100)
  with pytest.raises(ValueError, match="max_length=1"):
    pipeline.buckets_for(1)


def _rows(batch):
  return {tuple(r[m == 1]) for r, m in zip(batch["input_ids"], batch["attention_mask"])}


def test_processes_read_disjoint_shares_of_each_epoch(proc):
  records = _records(GP_L, 12)
  everything = set().union(*[_rows(_dataset(proc, records, num_epochs=1)[i]) for i in range(3)])
  assert len(everything) == 12
  shares = [set().union(*[_rows(b) for b in _dataset(proc, records, batch_size=2, num_epochs=1,
                                                     process_index=p, process_count=3)])
            for p in range(3)]
  assert all(len(s) == 4 for s in shares)
  assert shares[0] | shares[1] | shares[2] == everything
  assert not (shares[0] & shares[1] or shares[1] & shares[2] or shares[0] & shares[2])


def test_epochs_are_reshuffled(proc):
  ds = _dataset(proc, _records(GP_L, 8), batch_size=8)
  first, second = ds[0], ds[1]
  assert _rows(first) == _rows(second)
  assert not np.array_equal(first["input_ids"], second["input_ids"])


def test_iterator_state_restores_the_exact_stream(proc):
  ds = _dataset(proc, _records(GP_L, 10), batch_size=3)
  it = pipeline.iterator(ds, threads=2, prefetch=2)
  for _ in range(4):
    next(it)
  state = it.get_state()
  expected = [next(it) for _ in range(3)]
  fresh = pipeline.iterator(_dataset(proc, _records(GP_L, 10), batch_size=3), threads=1)
  fresh.set_state(state)
  for want in expected:
    got = next(fresh)
    for key in want:
      np.testing.assert_array_equal(got[key], want[key])


def test_reads_the_tfds_expert_data(proc, tmp_path):
  config = expert_tfds.builder_config("gp", GP_L, size=6, eval_size=2, seed=0)
  sources = expert_tfds.load_sources(expert_tfds.prepare(config, tmp_path))
  to_conversation = lambda r: expert_tfds.record_pair(r).conversation()  # noqa: E731
  batch = pipeline.sft_dataset(sources["train"], to_conversation, proc, batch_size=2, seed=1,
                               max_length=512)[0]
  for row in range(2):
    text = proc.tokenizer.decode(batch["input_ids"][row][batch["loss_mask"][row] == 1])
    assert text.startswith('\n{\n  "cards": [') and text.endswith("}<|eot_id|>")
