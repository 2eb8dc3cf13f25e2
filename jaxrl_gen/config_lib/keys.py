"""The keys of a config: dotted paths (`flat_keys`), 'did you mean' suggestions
(`closest_keys`), and the documented listing of `jaxrl-gen config` (`describe`).
"""

from __future__ import annotations

import difflib
from typing import Iterable

import ml_collections

from jaxrl_gen.config_lib import sections


def flat_keys(config: ml_collections.ConfigDict, prefix: str = "") -> list[str]:
  """Every leaf key as a dotted path."""
  keys = []
  for name, value in config.items():
    path = f"{prefix}{name}"
    if isinstance(value, ml_collections.ConfigDict):
      keys.extend(flat_keys(value, path + "."))
    else:
      keys.append(path)
  return keys


def closest_keys(config: ml_collections.ConfigDict, key: str, n: int = 3) -> list[str]:
  """The dotted keys of `config` nearest to `key` (for 'did you mean' messages), best first.

  A key scores how alike its leaf name is to `key`'s (spelling, or one an abbreviation of the
  other: initials as lr ~ learning_rate, or a prefix as num_upd ~ num_updates) plus half how
  alike its section is, so a misspelt leaf finds its own section's keys first.
  """
  def initials(name):
    words = name.split("_")
    return "".join(w[:1] for w in words) if len(words) > 1 else None

  def likeness(a, b):
    if a == b or initials(a) == b or initials(b) == a:
      return 1.0
    short, long = sorted((a, b), key=len)
    prefix = 0.9 if len(short) >= 2 and long.startswith(short) else 0.0
    return max(prefix, difflib.SequenceMatcher(None, a, b).ratio())

  section, _, leaf = key.rpartition(".")
  scores = {}
  for candidate in flat_keys(config):
    candidate_section, _, candidate_leaf = candidate.rpartition(".")
    scores[candidate] = (likeness(leaf, candidate_leaf)
                         + 0.5 * likeness(section, candidate_section))
  ranked = sorted((k for k, score in scores.items() if score >= 1.0), key=lambda k: -scores[k])
  return ranked[:n]


def describe(config: ml_collections.ConfigDict, docs: Iterable[str] = ()) -> list[str]:
  """Every key of `config` (`flat_keys`) as a line `key = value  # doc`.

  The documentation is read from key tables: an indented line starting with dotted keys
  (`    env.target   24: the number ...`, or `optim.b1, optim.b2  ...`), continued by the
  lines indented further. The tables of `docs` (e.g. the config file's docstring) come first,
  then those of the section functions (`sections`); a key no table documents has no comment.
  """
  import inspect  # noqa: PLC0415
  import re  # noqa: PLC0415

  entry = re.compile(r"^(\s*)([a-z_]\w*(?:\.\w+)+(?:, [a-z_]\w*(?:\.\w+)+)*)(?:\s+(.*))?$")
  functions = inspect.getmembers(sections, inspect.isfunction)
  own = [f.__doc__ or "" for _, f in functions if f.__module__ == sections.__name__]
  found: dict[str, str] = {}
  for text in [*docs, *own]:
    lines, i = text.splitlines(), 0
    while i < len(lines):
      match = entry.match(lines[i].rstrip())
      i += 1
      if not match:
        continue
      indent, doc = len(match.group(1)), [match.group(3) or ""]
      while i < len(lines) and lines[i].strip() and (
          len(lines[i]) - len(lines[i].lstrip()) > indent):  # a continuation line
        doc.append(lines[i].strip())
        i += 1
      for key in match.group(2).split(", "):
        found.setdefault(key, " ".join(d for d in doc if d))
  lines = []
  for key in flat_keys(config):
    value = config
    for part in key.split("."):
      value = value[part]
    lines.append(f"{key} = {value!r}" + (f"  # {found[key]}" if found.get(key) else ""))
  return lines
