"""Answer-field extraction: the reference's JSON-then-regex semantics, linear time."""

import time

from jaxrl_gen.envs import fields

SFT_STYLE = '''
{
  "cards": ['A', '3', 'K', '6'],
  "number": [1, 3, 10, 6],
  "formula": "10*3-6*1=24",
}'''


def test_reads_sft_style_answer():
  parsed = fields.json_object(SFT_STYLE)
  assert parsed is None  # trailing comma, single quotes: not JSON
  assert fields.string_field(SFT_STYLE, "formula") == "10*3-6*1=24"
  assert fields.list_field(SFT_STYLE, "cards") == ["A", "3", "K", "6"]
  assert fields.list_field(SFT_STYLE, "number") == ["1", "3", "10", "6"]


def test_reads_strict_json_and_unquoted_lists():
  text = '{"cards": ["A", "3", "K", "6"], "number": [1, 3, 10, 6], "formula": "10*3-6*1=24"}'
  parsed = fields.json_object(text)
  assert fields.string_field(text, "formula", parsed) == "10*3-6*1=24"
  assert fields.list_field(text, "cards", parsed) == ["A", "3", "K", "6"]
  assert fields.list_field(text, "number", parsed) == ["1", "3", "10", "6"]
  assert fields.list_field('"cards": [A, 3, K, 6]', "cards") == ["A", "3", "K", "6"]


def test_missing_fields_are_none():
  assert fields.string_field("no json here", "formula") is None
  assert fields.list_field('"cards": []', "cards") is None  # the regex needs one character
  assert fields.string_field('"formula": "10*3\n-6"', "formula") is None  # no newline in `.*?`


def test_regex_semantics_match_the_reference_on_tricky_text():
  import re
  cases = [
      '"formula": "1+2" "formula": "3"',
      '"formula": "a\n" "formula": "b"',
      '"cards": [] "cards": [1, 2, 3, 4]',
      '"cards": [1, "cards": [2]',
      'x "formula": "',
  ]
  for text in cases:
    for key, pattern in (("formula", r'"formula": "(.*?)"'), ("cards", r'"cards": \[([^\]]+)\]')):
      match = re.search(pattern, text)
      finder = fields._find_quoted if key == "formula" else fields._find_bracketed
      assert finder(text, key) == (match.group(1) if match else None), (text, key)


def test_hostile_text_is_linear_time():
  for text in ('"cards": [' * 200_000, '"formula": "\n' * 200_000, "[" * 1_000_000):
    start = time.perf_counter()
    fields.json_object(fields.clip(text))
    fields.list_field(fields.clip(text), "cards")
    fields.string_field(fields.clip(text), "formula")
    assert time.perf_counter() - start < 0.05
