"""One- and two-step arithmetic word problems in GSM8K's row format (worked solution, then `#### N`).

Small numbers on purpose: a 135M teacher solves about half of one-step problems, so prompt strategies differ
measurably (docs/methods.md §6).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

NAMES = [
    ("Tom", "he"),
    ("Maria", "she"),
    ("Ali", "he"),
    ("Sofia", "she"),
    ("Ken", "he"),
    ("Lena", "she"),
    ("Omar", "he"),
    ("Priya", "she"),
    ("Jack", "he"),
    ("Mei", "she"),
    ("Lucas", "he"),
    ("Ada", "she"),
]
ITEMS = [
    "apples",
    "stickers",
    "marbles",
    "pencils",
    "cookies",
    "books",
    "stamps",
    "shells",
    "balloons",
    "cards",
    "eggs",
    "flowers",
]


def _add(rng: random.Random, name: str, pron: str, friend: str, item: str) -> tuple[str, str, int]:
    a, b = rng.randint(2, 30), rng.randint(2, 30)
    q = f"{name} has {a} {item}. {pron.capitalize()} gets {b} more {item}. How many {item} does {name} have now?"
    return q, f"{name} has {a} + {b} = {a + b} {item} now.", a + b


def _sub(rng: random.Random, name: str, pron: str, friend: str, item: str) -> tuple[str, str, int]:
    a = rng.randint(10, 40)
    b = rng.randint(1, a - 1)
    q = f"{name} had {a} {item} and gave {b} of them to {friend}. How many {item} does {name} have left?"
    return q, f"{name} has {a} - {b} = {a - b} {item} left.", a - b


def _add_sub(rng: random.Random, name: str, pron: str, friend: str, item: str) -> tuple[str, str, int]:
    a, b = rng.randint(5, 30), rng.randint(2, 20)
    c = rng.randint(1, a + b - 1)
    q = (
        f"{name} has {a} {item}. {pron.capitalize()} buys {b} more, then gives {c} to {friend}. "
        f"How many {item} does {name} have now?"
    )
    s = f"After buying, {name} has {a} + {b} = {a + b} {item}.\nAfter giving some away, {name} has {a + b} - {c} = {a + b - c} {item}."
    return q, s, a + b - c


def _mul(rng: random.Random, name: str, pron: str, friend: str, item: str) -> tuple[str, str, int]:
    a, b = rng.randint(2, 9), rng.randint(2, 9)
    q = f"{name} buys {a} bags of {item}. Each bag holds {b} {item}. How many {item} does {name} buy?"
    return q, f"{name} buys {a} * {b} = {a * b} {item}.", a * b


def _mul_add(rng: random.Random, name: str, pron: str, friend: str, item: str) -> tuple[str, str, int]:
    a, b, c = rng.randint(2, 6), rng.randint(2, 9), rng.randint(1, 15)
    q = (
        f"{name} has {a} boxes with {b} {item} in each box, and {c} loose {item}. "
        f"How many {item} does {name} have in total?"
    )
    s = f"The boxes hold {a} * {b} = {a * b} {item}.\nIn total {name} has {a * b} + {c} = {a * b + c} {item}."
    return q, s, a * b + c


def _share(rng: random.Random, name: str, pron: str, friend: str, item: str) -> tuple[str, str, int]:
    people, each = rng.randint(2, 6), rng.randint(2, 8)
    total = people * each
    q = f"{name} shares {total} {item} equally among {people} friends. How many {item} does each friend get?"
    return q, f"Each friend gets {total} / {people} = {each} {item}.", each


TEMPLATES: list[tuple[Callable[..., tuple[str, str, int]], int]] = [
    (_add, 3),
    (_sub, 3),
    (_add_sub, 3),
    (_mul, 2),
    (_mul_add, 2),
    (_share, 1),
]


def arithmetic_rows(n: int = 300, seed: int = 7) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    makers = [fn for fn, weight in TEMPLATES for _ in range(weight)]
    rows: list[dict[str, Any]] = []
    seen: set[Any] = set()
    while len(rows) < n:
        (name, pron), (friend, _) = rng.sample(NAMES, 2)
        q, solution, result = rng.choice(makers)(rng, name, pron, friend, rng.choice(ITEMS))
        if q in seen:
            continue
        seen.add(q)
        rows.append({"id": f"arith-{len(rows)}", "question": q, "answer": f"{solution}\n#### {result}"})
    return rows
