"""The public LLaVA-style SFT JSON (the reference's SFT data, `reference.md` §5).

    [{"image": "cards/0.png" | ["a.png", ...] | null,        (optional)
      "conversations": [{"from": "human", "value": "<image>\\n..."},
                        {"from": "gpt", "value": "..."}, ...]}, ...]

`load` reads and checks the file (a clear error names the record and field at fault);
`to_conversation` turns a record into the `core.Conversation` the pipeline encodes: "human"
turns become user turns and "gpt" turns assistant turns; each `<image>` marker (with the
newline after it) in a human turn takes the record's next image, placed first in that turn's
content, as the reference's `[image, text]` message. Image paths are relative to `image_root`
(default: the JSON file's folder).
"""

from __future__ import annotations

import json
import os
from typing import Any

from jaxrl_gen.envs import core

IMAGE_MARKER = "<image>"
ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant"}


def load(path: str | os.PathLike) -> list[dict]:
  """The records of a LLaVA JSON file (a list, or JSON lines), validated."""
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise FileNotFoundError(f"LLaVA data {path!r}: no such file")
  with open(path, encoding="utf-8") as f:
    text = f.read()
  try:
    records = json.loads(text)
  except json.JSONDecodeError:
    try:
      records = [json.loads(line) for line in text.splitlines() if line.strip()]
    except json.JSONDecodeError as e:
      raise ValueError(f"LLaVA data {path!r}: not JSON or JSON lines ({e})") from None
  if not isinstance(records, list) or not records:
    raise ValueError(f"LLaVA data {path!r}: expected a non-empty list of records")
  for i, record in enumerate(records):
    check(record, f"{path}[{i}]")
  return records


def check(record: Any, where: str) -> None:
  """Raises a one-line ValueError naming what is wrong with a record."""
  if not isinstance(record, dict) or not isinstance(record.get("conversations"), list):
    raise ValueError(f"{where}: a record needs a 'conversations' list")
  turns = record["conversations"]
  for j, turn in enumerate(turns):
    if not isinstance(turn, dict) or turn.get("from") not in ROLES or not isinstance(
        turn.get("value"), str):
      raise ValueError(f"{where}.conversations[{j}]: needs 'from' in {sorted(ROLES)} and a "
                       "string 'value'")
  if not any(ROLES[t["from"]] == "assistant" for t in turns):
    raise ValueError(f"{where}: no 'gpt' turn to learn from")
  paths = image_paths(record)
  markers = sum(t["value"].count(IMAGE_MARKER) for t in turns)
  if markers > len(paths):
    raise ValueError(f"{where}: {markers} <image> markers but {len(paths)} images")
  if any(not isinstance(p, str) for p in paths):
    raise ValueError(f"{where}.image: must be a path, a list of paths or null")


def image_paths(record: dict) -> list:
  image = record.get("image")
  if image is None:
    return []
  return list(image) if isinstance(image, list) else [image]


def to_conversation(record: dict, image_root: str | os.PathLike = "") -> core.Conversation:
  """The record as a conversation; images are loaded as PIL RGB images."""
  from jaxrl_gen.text import images

  paths = iter(image_paths(record))
  turns = []
  for turn in record["conversations"]:
    role, text, image = ROLES[turn["from"]], turn["value"], None
    if role == "user" and IMAGE_MARKER in text:
      if text.count(IMAGE_MARKER) > 1:
        raise ValueError("a turn with several <image> markers is not supported (one image a turn)")
      text = text.replace(IMAGE_MARKER + "\n", "", 1).replace(IMAGE_MARKER, "", 1)
      path = os.path.join(os.fspath(image_root), next(paths))
      with open(path, "rb") as f:
        image = images.to_pil(f.read())
    turns.append(core.Turn(role, text, image))
  return tuple(turns)


def from_pairs(pairs, image_dir: str | os.PathLike | None = None) -> list[dict]:
  """LLaVA records of expert pairs (`experts.Pair`, failed attempts included as turns), images
  written as PNG into `image_dir`: the format of the reference's released SFT data, for export
  and tests. (Read back, every "gpt" turn is a target, the failed attempts too.)"""
  records = []
  for i, pair in enumerate(pairs):
    record, turns = {"id": str(i)}, []
    for turn in pair.conversation():
      value = turn.text
      if turn.image is not None:
        if image_dir is None:
          raise ValueError("pairs with images need an image_dir to write them to")
        record["image"] = f"{i}.png"
        turn.image.save(os.path.join(image_dir, record["image"]))
        value = IMAGE_MARKER + "\n" + value
      turns.append({"from": "human" if turn.role == "user" else "gpt", "value": value})
    record["conversations"] = turns
    records.append(record)
  return records
