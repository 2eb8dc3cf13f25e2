"""The reference's expert solver, exactly its family of formulas, in a deterministic order.

For every distinct ordering of the four numbers (sorted; the reference shuffles them), every
operator triple from '+-*/' (in `itertools.product` order) and the seven bracket layouts
below, a formula whose exact value equals the target is a solution. A layout read with the
usual precedence is one of the five binary-tree shapes over the ordered numbers; the solver
evaluates each shape once per ordering with shared sub-results on exact rationals (pairs of
integers), then writes out the strings of the hits.
"""

from __future__ import annotations

import functools
import itertools
from typing import Sequence

from jaxrl_gen.envs.general_points import formula

OPS = "+-*/"
LAYOUTS = (
    "{0}{4}{1}{5}{2}{6}{3}",
    "({0}{4}{1}){5}{2}{6}{3}",
    "({0}{4}{1}{5}{2}){6}{3}",
    "{0}{4}({1}{5}{2}){6}{3}",
    "{0}{4}({1}{5}{2}{6}{3})",
    "{0}{4}{1}{5}({2}{6}{3})",
    "({0}{4}{1}){5}({2}{6}{3})",
)
OP_TRIPLES = tuple(itertools.product(OPS, repeat=3))
# The five shapes over leaves 0..3 (operator i always sits between leaves i and i+1).
SHAPES = (
    (((0, 1), 2), 3),
    ((0, (1, 2)), 3),
    ((0, 1), (2, 3)),
    (0, ((1, 2), 3)),
    (0, (1, (2, 3))),
)


def _shape(rpn: list[str]):
  """The tree shape of an RPN formula over the leaves '0'..'3'."""
  stack = []
  for token in rpn:
    if token in formula.PRECEDENCE:
      right = stack.pop()
      stack.append((stack.pop(), right))
    else:
      stack.append(int(token))
  return stack[0]


# _LAYOUT_SHAPE[layout][k]: which shape layout `layout` has with operator triple k.
_LAYOUT_SHAPE = tuple(
    tuple(SHAPES.index(_shape(formula.to_rpn(formula.tokenize(layout.format(0, 1, 2, 3, *ops)))))
          for ops in OP_TRIPLES)
    for layout in LAYOUTS)


def _combine(x, op: str, y):
  """x op y on rationals (numerator, denominator); None when undefined (division by zero)."""
  if x is None or y is None:
    return None
  (a, b), (c, d) = x, y
  if op == "+":
    return (a * d + c * b, b * d)
  if op == "-":
    return (a * d - c * b, b * d)
  if op == "*":
    return (a * c, b * d)
  return None if c == 0 else (a * d, b * c)


def _shape_values(numbers: Sequence[int]) -> list[list]:
  """values[shape][k]: the value of each shape with operator triple k, as a rational or None."""
  p = [(n, 1) for n in numbers]
  ab = [_combine(p[0], o, p[1]) for o in OPS]
  bc = [_combine(p[1], o, p[2]) for o in OPS]
  cd = [_combine(p[2], o, p[3]) for o in OPS]
  ab_c = [[_combine(ab[i], o, p[2]) for o in OPS] for i in range(4)]
  a_bc = [[_combine(p[0], OPS[i], bc[j]) for j in range(4)] for i in range(4)]
  bc_d = [[_combine(bc[j], o, p[3]) for o in OPS] for j in range(4)]
  b_cd = [[_combine(p[1], OPS[j], cd[k]) for k in range(4)] for j in range(4)]
  values = [[], [], [], [], []]
  for i, j, k in itertools.product(range(4), repeat=3):
    oi, ok = OPS[i], OPS[k]
    values[0].append(_combine(ab_c[i][j], ok, p[3]))
    values[1].append(_combine(a_bc[i][j], ok, p[3]))
    values[2].append(_combine(ab[i], OPS[j], cd[k]))
    values[3].append(_combine(p[0], oi, bc_d[j][k]))
    values[4].append(_combine(p[0], oi, b_cd[j][k]))
  return values


@functools.lru_cache(maxsize=1 << 16)
def _solve_sorted(numbers: tuple[int, ...], target: int) -> tuple[str, ...]:
  found = []
  for perm in sorted(set(itertools.permutations(numbers))):
    values = _shape_values(perm)
    hits = [[v is not None and v[0] == target * v[1] for v in shape] for shape in values]
    names = [str(n) for n in perm]
    for k, ops in enumerate(OP_TRIPLES):
      for layout, shapes in zip(LAYOUTS, _LAYOUT_SHAPE):
        if hits[shapes[k]][k]:
          found.append(layout.format(*names, *ops))
  return tuple(found)


def solutions(numbers: Sequence[int], target: int = 24) -> tuple[str, ...]:
  """Every solver formula (no spaces, no '=') for four non-negative integers; memoised by the
  multiset and target, so the order of `numbers` does not matter."""
  numbers = tuple(numbers)
  if len(numbers) != 4 or any(not isinstance(n, int) or isinstance(n, bool) or n < 0
                              for n in numbers):
    raise ValueError(f"numbers={numbers!r}: must be four non-negative integers")
  return _solve_sorted(tuple(sorted(numbers)), int(target))


def solve(numbers: Sequence[int], target: int = 24) -> list[str]:
  """The reference solver's formulas for a hand's numbers (an empty list: unsolvable)."""
  return list(solutions(numbers, target))


@functools.lru_cache(maxsize=1 << 12)
def prefixes(numbers: tuple[int, ...], target: int) -> frozenset[str]:
  """Every prefix of every solution (the verifier's `any(s.startswith(x))` as a set lookup)."""
  return frozenset(s[:i] for s in solutions(numbers, target) for i in range(len(s) + 1))
