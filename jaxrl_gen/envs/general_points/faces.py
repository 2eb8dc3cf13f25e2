"""Card faces drawn with Pillow primitives only (no fonts, no image files), so the pixels do not
depend on what a machine has installed: a white card, its rank over its suit in the top-left and
bottom-right corners, a large rank and suit in the middle. Red for hearts and
diamonds, black for spades and clubs. Drawn at 3x and box-reduced for smooth edges.
"""

from __future__ import annotations

import functools

from PIL import Image, ImageDraw

RED = (200, 16, 32)
BLACK = (24, 24, 24)
WHITE = (255, 255, 255)
EDGE = (150, 150, 150)
SUPERSAMPLE = 3

# Rank glyphs as strokes in a box 100 units tall (and `width` wide):
# ("line", points) | ("arc", bbox, start_deg, end_deg) (clockwise from 3 o'clock) |
# ("ellipse", bbox).
_GLYPHS = {
    "A": (60, [("line", [(2, 100), (30, 0), (58, 100)]), ("line", [(14, 64), (46, 64)])]),
    "2": (60, [("arc", (4, 2, 56, 54), 180, 400), ("line", [(50, 45), (4, 98), (60, 98)])]),
    "3": (60, [("arc", (6, 2, 54, 48), 200, 450), ("arc", (2, 48, 58, 98), 270, 520)]),
    "4": (60, [("line", [(44, 100), (44, 2), (2, 68), (60, 68)])]),
    "5": (60, [("line", [(54, 2), (10, 2), (6, 46)]), ("arc", (2, 38, 58, 98), 215, 510)]),
    "6": (60, [("ellipse", (2, 44, 58, 98)), ("arc", (2, 2, 110, 150), 180, 262)]),
    "7": (60, [("line", [(2, 2), (58, 2), (20, 100)])]),
    "8": (60, [("ellipse", (8, 2, 52, 46)), ("ellipse", (2, 46, 58, 98))]),
    "10": (104, [("line", [(4, 16), (22, 2), (22, 100)]), ("ellipse", (44, 2, 102, 98))]),
    "J": (56, [("line", [(20, 2), (52, 2)]), ("line", [(44, 2), (44, 72)]),
               ("arc", (2, 44, 44, 98), 0, 170)]),
    "Q": (64, [("ellipse", (2, 2, 62, 94)), ("line", [(36, 70), (62, 100)])]),
    "K": (60, [("line", [(6, 0), (6, 100)]), ("line", [(58, 2), (6, 62)]),
               ("line", [(24, 44), (60, 100)])]),
}


def _suit_shapes(suit: str):
  """Filled shapes of a suit in a 100x100 box: ("ellipse"|"polygon", coordinates)."""
  if suit == "D":
    return [("polygon", [(50, 0), (88, 50), (50, 100), (12, 50)])]
  if suit == "H":
    return [("ellipse", (2, 6, 54, 58)), ("ellipse", (46, 6, 98, 58)),
            ("polygon", [(5, 42), (95, 42), (50, 96)])]
  if suit == "S":
    return [("ellipse", (2, 38, 54, 86)), ("ellipse", (46, 38, 98, 86)),
            ("polygon", [(5, 58), (95, 58), (50, 2)]), ("polygon", [(50, 62), (30, 100), (70, 100)])]
  return [("ellipse", (28, 2, 72, 46)), ("ellipse", (4, 38, 48, 82)), ("ellipse", (52, 38, 96, 82)),
          ("ellipse", (36, 30, 64, 70)), ("polygon", [(50, 50), (32, 100), (68, 100)])]


def _scale(points, x0: float, y0: float, k: float):
  return [(x0 + k * x, y0 + k * y) for x, y in points]


def _box(bbox, x0: float, y0: float, k: float):
  a, b, c, d = bbox
  return (x0 + k * a, y0 + k * b, x0 + k * c, y0 + k * d)


def glyph_width(rank: str, height: float) -> float:
  return _GLYPHS[rank][0] * height / 100


def draw_rank(draw: ImageDraw.ImageDraw, rank: str, x0: float, y0: float, height: float,
              color, turned: bool = False):
  """A rank glyph with its top-left corner at (x0, y0); `turned` draws '6' upside down (a 9)."""
  k = height / 100
  stroke = max(1, round(12 * k))
  width_units, strokes = _GLYPHS[rank]

  def flip(p):  # rotate 180 degrees inside the glyph box
    return (width_units - p[0], 100 - p[1])

  for shape in strokes:
    if shape[0] == "line":
      points = [flip(p) for p in shape[1]] if turned else shape[1]
      points = _scale(points, x0, y0, k)
      draw.line(points, fill=color, width=stroke, joint="curve")
      for x, y in (points[0], points[-1]):  # round caps
        r = stroke / 2
        draw.ellipse((x - r, y - r, x + r, y + r), fill=color)
    else:
      bbox = shape[1]
      if turned:
        (a, b), (c, d) = flip(bbox[2:]), flip(bbox[:2])
        bbox = (a, b, c, d)
      box = _box(bbox, x0, y0, k)
      if shape[0] == "ellipse":
        draw.ellipse(box, outline=color, width=stroke)
      else:
        offset = 180 if turned else 0
        draw.arc(box, shape[2] + offset, shape[3] + offset, fill=color, width=stroke)


def draw_suit(draw: ImageDraw.ImageDraw, suit: str, x0: float, y0: float, size: float, color):
  k = size / 100
  for kind, coords in _suit_shapes(suit):
    if kind == "ellipse":
      draw.ellipse(_box(coords, x0, y0, k), fill=color)
    else:
      draw.polygon(_scale(coords, x0, y0, k), fill=color)


def _draw_index(draw, rank: str, suit: str, w: int, h: int, color, bottom: bool):
  """The corner index, rank over a small suit, top-left or bottom-right. Both are upright: a
  turned index would make a 6 read as a 9."""
  rank_height, suit_size, gap = 0.15 * h, 0.15 * w, 0.03 * h
  rank_key, upside_down = _glyph(rank)
  gw = glyph_width(rank_key, rank_height)
  x = w - 0.07 * w - gw if bottom else 0.07 * w
  y = h - 0.05 * h - rank_height - gap - suit_size if bottom else 0.05 * h
  draw_rank(draw, rank_key, x, y, rank_height, color, upside_down)
  draw_suit(draw, suit, x + gw / 2 - suit_size / 2, y + rank_height + gap, suit_size, color)


def _glyph(rank: str) -> tuple[str, bool]:
  """The glyph that draws a rank, and whether it is turned (a 9 is a turned 6)."""
  return ("6", True) if rank == "9" else (rank, False)


@functools.lru_cache(maxsize=128)
def card_face(card: str, width: int, height: int, background) -> Image.Image:
  """The face of `card` ('SK', 'DT', ...) as an RGB image of `width` x `height`, its rounded
  corners showing `background` (cached: treat it as read-only)."""
  suit, rank = card[0], ("10" if card[1] == "T" else card[1])
  color = RED if suit in "HD" else BLACK
  w, h = width * SUPERSAMPLE, height * SUPERSAMPLE
  image = Image.new("RGB", (w, h), background)
  draw = ImageDraw.Draw(image)
  draw.rounded_rectangle((0, 0, w - 1, h - 1), radius=0.06 * w, fill=WHITE, outline=EDGE,
                         width=max(1, round(w / 90)))
  _draw_index(draw, rank, suit, w, h, color, bottom=False)
  _draw_index(draw, rank, suit, w, h, color, bottom=True)
  rank_key, upside_down = _glyph(rank)
  big = 0.27 * h
  draw_rank(draw, rank_key, (w - glyph_width(rank_key, big)) / 2, 0.2 * h, big, color, upside_down)
  size = 0.3 * w
  draw_suit(draw, suit, (w - size) / 2, 0.56 * h, size, color)
  return image.reduce(SUPERSAMPLE)
