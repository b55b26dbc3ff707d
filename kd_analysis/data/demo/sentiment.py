"""Short review sentences in GLUE SST-2's row format (`sentence`, `label`), from hand-written phrase lists."""

from __future__ import annotations

import random
from typing import Any

SUBJECTS = [
    "the movie",
    "this film",
    "the soundtrack",
    "the acting",
    "the plot",
    "the ending",
    "the script",
    "the lead actor",
    "the dialogue",
    "the camera work",
    "this sequel",
    "the opening scene",
    "the director's new picture",
    "the cast",
    "the pacing",
    "the story",
    "the visual effects",
    "the humour",
    "the final act",
    "this documentary",
]
POSITIVE = [
    "is a pure delight",
    "is warm and genuinely funny",
    "kept me smiling from start to finish",
    "is beautifully made",
    "feels fresh and clever",
    "is moving without being sentimental",
    "is a real crowd pleaser",
    "works wonderfully",
    "is sharp, witty and honest",
    "is well worth the ticket",
    "left me wanting more",
    "shines in every scene",
    "is a small masterpiece",
    "is tender and wise",
    "is thrilling from the first minute",
]
NEGATIVE = [
    "is a tedious mess",
    "is dull and lifeless",
    "made me check my watch",
    "falls completely flat",
    "is painfully slow",
    "feels cheap and lazy",
    "is a waste of a good cast",
    "never comes together",
    "is loud, long and pointless",
    "is not worth the ticket",
    "left me cold",
    "drags in every scene",
    "is an embarrassing failure",
    "is clumsy and predictable",
    "is boring from the first minute",
]


def sentiment_rows(n: int = 300, seed: int = 11) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    pairs = [(s, p, 1) for s in SUBJECTS for p in POSITIVE] + [(s, p, 0) for s in SUBJECTS for p in NEGATIVE]
    rng.shuffle(pairs)
    return [{"sentence": f"{s} {p} .", "label": str(label)} for s, p, label in pairs[:n]]
