"""The large multiple-choice demo (≈1,800 questions, CommonsenseQA rows): large enough that a 4–5 point
difference between two students on 500 held-out questions is detectable.

Built from the small set's fact tables plus new hand-written ones. Each fact is asked in more than one wording
and with its own distractors, and ordered scales ("which is the heaviest?") give many distinct questions from a
few lines, so held-out questions often re-ask, in other words, a fact seen in training: the demo measures how
well a student takes over what the teacher knows, not open-world knowledge.
"""

from __future__ import annotations

import random
from itertools import combinations
from typing import Any

from kd_analysis.data.demo.mcq import ANTONYMS, CATEGORIES, CATEGORY_PHRASES, PAIR_TABLES, indefinite_article, mcq_row

MORE_CATEGORIES: dict[str, list[str]] = {
    "sport": ["tennis", "football", "swimming", "rowing", "boxing", "cricket", "hockey", "skiing"],
    "drink": ["tea", "coffee", "juice", "milk", "lemonade", "cocoa", "water"],
    "insect": ["ant", "beetle", "wasp", "mosquito", "ladybird", "grasshopper", "moth"],
    "fish": ["salmon", "trout", "cod", "tuna", "herring", "carp", "sardine"],
    "flower": ["rose", "tulip", "daisy", "lily", "sunflower", "orchid", "daffodil"],
    "tree": ["oak", "pine", "birch", "maple", "willow", "palm", "cedar"],
    "metal": ["iron", "copper", "silver", "gold", "tin", "zinc", "aluminium"],
    "shape": ["circle", "square", "triangle", "rectangle", "hexagon", "oval"],
    "job": ["teacher", "baker", "nurse", "pilot", "plumber", "farmer", "dentist"],
    "dessert": ["pudding", "pie", "trifle", "sorbet", "cheesecake", "brownie"],
    "room": ["kitchen", "bedroom", "hallway", "attic", "cellar", "bathroom"],
    "weather": ["rain", "snow", "hail", "fog", "thunder", "drizzle"],
}

MORE_PAIRS = [
    (
        "colour",
        "What colour is a ripe {cue} usually?",
        [
            ("banana", "yellow"),
            ("tomato", "red"),
            ("lime", "green"),
            ("blueberry", "blue"),
            ("plum", "purple"),
            ("coconut", "brown"),
            ("orange", "orange"),
            ("snowball", "white"),
            ("lump of coal", "black"),
            ("flamingo", "pink"),
        ],
    ),
    (
        "sound",
        "Which sound does a {cue} make?",
        [
            ("cow", "moo"),
            ("dog", "woof"),
            ("cat", "meow"),
            ("duck", "quack"),
            ("sheep", "baa"),
            ("snake", "hiss"),
            ("lion", "roar"),
            ("bee", "buzz"),
            ("owl", "hoot"),
            ("horse", "neigh"),
            ("pig", "oink"),
            ("mouse", "squeak"),
            ("frog", "croak"),
            ("rooster", "crow"),
        ],
    ),
    (
        "made",
        "What is {a} {cue} mostly made of?",
        [
            ("window", "glass"),
            ("candle", "wax"),
            ("loaf of bread", "flour"),
            ("tyre", "rubber"),
            ("sweater", "wool"),
            ("coin", "metal"),
            ("book", "paper"),
            ("brick", "clay"),
            ("table", "wood"),
            ("snowman", "snow"),
            ("ice cube", "water"),
            ("omelette", "eggs"),
            ("pair of jeans", "cotton"),
        ],
    ),
    (
        "who",
        "Who {cue}?",
        [
            ("fixes teeth", "dentist"),
            ("flies a plane", "pilot"),
            ("bakes bread", "baker"),
            ("fixes leaking pipes", "plumber"),
            ("cuts hair", "hairdresser"),
            ("delivers letters", "postman"),
            ("puts out fires", "firefighter"),
            ("grows crops", "farmer"),
            ("treats sick animals", "vet"),
            ("writes news stories", "journalist"),
            ("designs buildings", "architect"),
            ("cooks in a restaurant", "chef"),
            ("teaches children at school", "teacher"),
            ("catches criminals", "police officer"),
        ],
    ),
    (
        "home",
        "Where does {a} {cue} usually live?",
        [
            ("bee", "hive"),
            ("bird", "nest"),
            ("fish", "water"),
            ("rabbit", "burrow"),
            ("horse", "stable"),
            ("pig", "sty"),
            ("spider", "web"),
            ("bat", "cave"),
            ("dog", "kennel"),
            ("fox", "den"),
            ("polar bear", "arctic"),
            ("camel", "desert"),
            ("monkey", "jungle"),
        ],
    ),
]

# ordered from least to most: (id prefix, question for the most, question for the least, items)
SCALES = [
    (
        "size",
        "Which of these animals is the biggest?",
        "Which of these animals is the smallest?",
        [
            "ant",
            "bee",
            "mouse",
            "frog",
            "rabbit",
            "cat",
            "fox",
            "sheep",
            "pig",
            "horse",
            "bear",
            "giraffe",
            "elephant",
            "whale",
        ],
    ),
    (
        "time",
        "Which is the longest amount of time?",
        "Which is the shortest amount of time?",
        ["second", "minute", "hour", "day", "week", "month", "year", "decade", "century", "millennium"],
    ),
    (
        "speed",
        "Which of these is usually the fastest?",
        "Which of these is usually the slowest?",
        [
            "snail",
            "tortoise",
            "person walking",
            "person running",
            "bicycle",
            "horse galloping",
            "car on a motorway",
            "high-speed train",
            "jet plane",
            "rocket",
        ],
    ),
    (
        "heat",
        "Which of these is the hottest?",
        "Which of these is the coldest?",
        [
            "ice cube",
            "snow",
            "cold tap water",
            "room air",
            "warm bath",
            "cup of hot tea",
            "boiling water",
            "oven",
            "lava",
            "surface of the sun",
        ],
    ),
    (
        "weight",
        "Which of these is the heaviest?",
        "Which of these is the lightest?",
        ["feather", "paper clip", "coin", "apple", "book", "chair", "bicycle", "grown man", "car", "lorry", "ship"],
    ),
    (
        "length",
        "Which is the longest distance?",
        "Which is the shortest distance?",
        [
            "millimetre",
            "centimetre",
            "inch",
            "foot",
            "metre",
            "kilometre",
            "mile",
            "marathon",
            "width of a country",
            "distance to the moon",
        ],
    ),
]
SYNONYM_PHRASES = ['What is the opposite of "{w}"?', 'Which word means the reverse of "{w}"?']
CATEGORY_WORDINGS = 2  # each member asked this many ways, each with its own distractors
SCALE_QUESTIONS = 70  # per scale and direction


def _scale_rows(rng: random.Random, start: int) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for prefix, most, least, items in SCALES:
        subsets = list(combinations(range(len(items)), 5))
        for question, pick in ((most, max), (least, min)):
            for chosen in rng.sample(subsets, min(SCALE_QUESTIONS, len(subsets))):
                answer = items[pick(chosen)]
                choices = [items[i] for i in chosen]
                rng.shuffle(choices)
                labels = ["A", "B", "C", "D", "E"]
                rows.append(
                    {
                        "id": f"{prefix}-{start + len(rows)}",
                        "question": question,
                        "question_concept": prefix,
                        "choices": {"label": labels, "text": choices},
                        "answerKey": labels[choices.index(answer)],
                    }
                )
    return rows


def mcq_large_rows(seed: int = 17) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    rows: list[dict[str, Any]] = []
    categories = {**CATEGORIES, **MORE_CATEGORIES}
    for cat, members in categories.items():
        others = [m for c, ms in categories.items() if c != cat for m in ms if m not in members]
        for i, member in enumerate(members):
            for w in range(CATEGORY_WORDINGS):
                question = CATEGORY_PHRASES[(i + 3 * w) % len(CATEGORY_PHRASES)].format(
                    a=indefinite_article(cat), cat=cat
                )
                rows.append(mcq_row(rng, f"cat-{len(rows)}", question, member, others + [member], cat))
    words = [w for pair in ANTONYMS for w in pair]
    for a, b in ANTONYMS:
        for word, opposite in ((a, b), (b, a)):
            pool = [w for w in words if w not in (a, b)] + [opposite]
            for phrase in SYNONYM_PHRASES:
                rows.append(mcq_row(rng, f"ant-{len(rows)}", phrase.format(w=word), opposite, pool, word))
    for prefix, template, pairs in [*PAIR_TABLES, *MORE_PAIRS]:
        pool = sorted({answer for _, answer in pairs})
        for cue, answer in pairs:
            question = template.format(cue=cue, a=indefinite_article(cue))
            for _ in range(2):  # the same fact with two distractor sets
                rows.append(mcq_row(rng, f"{prefix}-{len(rows)}", question, answer, pool, cue))
    rows += _scale_rows(rng, len(rows))
    seen, unique = set(), []
    for r in rows:  # a repeated draw of the same question and choices is kept once
        key = (r["question"], tuple(sorted(r["choices"]["text"])))
        if key not in seen:
            seen.add(key)
            unique.append(r)
    rng.shuffle(unique)
    return unique
