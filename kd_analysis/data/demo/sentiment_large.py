"""The large sentiment demo (1,800 sentences, SST-2 rows): the small set's phrases plus new ones, and sentences
that turn with "but", where the clause after it carries the label, so a model that counts positive words fails."""

from __future__ import annotations

import random
from typing import Any

from kd_analysis.data.demo.sentiment import NEGATIVE, POSITIVE, SUBJECTS

MORE_SUBJECTS = [
    "the costume design",
    "the score",
    "the second half",
    "the comedy",
    "the romance",
    "the villain",
    "the lighting",
    "the editing",
    "the sound design",
    "the supporting cast",
    "the premise",
    "the screenplay",
    "the animation",
    "the finale",
    "the first act",
    "the twist",
    "the musical numbers",
    "the set design",
    "the young star",
    "the remake",
]
MORE_POSITIVE = [
    "is gorgeous to look at",
    "earns every laugh",
    "is smart and surprising",
    "is full of heart",
    "is a joy to watch",
    "never puts a foot wrong",
    "is quietly brilliant",
    "hits every note",
    "is gripping throughout",
    "is the best thing this year",
    "feels effortless",
    "is bold and inventive",
    "is funny and touching",
    "rewards your patience",
    "is pitch perfect",
]
MORE_NEGATIVE = [
    "is a chore to sit through",
    "wastes its premise",
    "is flat and forgettable",
    "is badly miscast",
    "feels endless",
    "is a mess from start to finish",
    "is shallow and smug",
    "misses every note",
    "is a dull retread",
    "falls apart in the end",
    "is lazy and derivative",
    "is unbearably smug",
    "is muddled and confused",
    "is a letdown",
    "is joyless",
]
TURN_SHARE = 0.3  # sentences with a turn ("X is bad , but Y is good .")


def sentiment_large_rows(n: int = 1800, seed: int = 23) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    subjects = SUBJECTS + MORE_SUBJECTS
    pos, neg = POSITIVE + MORE_POSITIVE, NEGATIVE + MORE_NEGATIVE
    plain = [(f"{s} {p} .", 1) for s in subjects for p in pos] + [(f"{s} {p} .", 0) for s in subjects for p in neg]
    rng.shuffle(plain)
    turns = int(n * TURN_SHARE)
    rows = [{"sentence": text, "label": str(label)} for text, label in plain[: n - turns]]
    seen = {r["sentence"] for r in rows}
    while len(rows) < n:
        first, second = rng.sample(subjects, 2)
        label = rng.randint(0, 1)
        before, after = (rng.choice(neg), rng.choice(pos)) if label else (rng.choice(pos), rng.choice(neg))
        text = f"{first} {before} , but {second} {after} ."
        if text not in seen:
            seen.add(text)
            rows.append({"sentence": text, "label": str(label)})
    rng.shuffle(rows)
    return rows
