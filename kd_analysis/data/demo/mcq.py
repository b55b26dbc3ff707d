"""Five-choice everyday-knowledge questions in CommonsenseQA's row format, from hand-written fact tables."""

from __future__ import annotations

import random
from typing import Any

CATEGORIES: dict[str, list[str]] = {
    "fruit": ["apple", "banana", "cherry", "grape", "mango", "pear", "peach", "plum", "lemon"],
    "vegetable": ["carrot", "potato", "onion", "cabbage", "spinach", "broccoli", "lettuce"],
    "tool": ["hammer", "screwdriver", "wrench", "saw", "drill", "pliers", "chisel"],
    "vehicle": ["bicycle", "truck", "bus", "train", "motorcycle", "tractor", "scooter"],
    "mammal": ["dog", "horse", "elephant", "rabbit", "tiger", "whale", "goat"],
    "bird": ["sparrow", "eagle", "penguin", "parrot", "owl", "pigeon", "robin"],
    "musical instrument": ["violin", "piano", "trumpet", "flute", "drum", "guitar", "cello"],
    "piece of furniture": ["sofa", "wardrobe", "bookshelf", "armchair", "dresser", "bench"],
    "piece of clothing": ["jacket", "sweater", "scarf", "sock", "glove", "shirt", "skirt"],
    "color": ["red", "blue", "green", "yellow", "purple", "brown"],
    "part of the body": ["elbow", "knee", "shoulder", "ankle", "wrist", "forehead"],
    "planet": ["Mercury", "Venus", "Mars", "Jupiter", "Saturn", "Neptune"],
}

ANTONYMS = [
    ("hot", "cold"),
    ("tall", "short"),
    ("fast", "slow"),
    ("happy", "sad"),
    ("wet", "dry"),
    ("open", "closed"),
    ("full", "empty"),
    ("early", "late"),
    ("loud", "quiet"),
    ("rich", "poor"),
    ("young", "old"),
    ("thick", "thin"),
    ("hard", "soft"),
    ("clean", "dirty"),
    ("strong", "weak"),
    ("sweet", "sour"),
    ("cheap", "expensive"),
    ("brave", "afraid"),
    ("smooth", "rough"),
    ("deep", "shallow"),
    ("awake", "asleep"),
    ("push", "pull"),
    ("win", "lose"),
    ("buy", "sell"),
    ("arrive", "leave"),
    ("remember", "forget"),
    ("give", "take"),
    ("above", "below"),
]

PLACES = [
    ("stove", "kitchen"),
    ("pillow", "bedroom"),
    ("bathtub", "bathroom"),
    ("library card", "library"),
    ("lifeguard", "swimming pool"),
    ("blackboard", "classroom"),
    ("shopping cart", "supermarket"),
    ("stethoscope", "hospital"),
    ("runway", "airport"),
    ("platform ticket", "train station"),
    ("altar", "church"),
    ("sandcastle", "beach"),
    ("tent", "campsite"),
    ("goalpost", "football pitch"),
    ("cash register", "shop"),
    ("haystack", "farm"),
    ("telescope", "observatory"),
    ("oven mitt", "kitchen"),
    ("toothbrush", "bathroom"),
    ("lawn mower", "garden shed"),
    ("microscope", "laboratory"),
    ("popcorn machine", "cinema"),
    ("anchor", "harbour"),
    ("cage with a lion", "zoo"),
    ("painting by a famous artist", "museum"),
]

USES = [
    ("cut paper", "scissors"),
    ("tell the time", "clock"),
    ("unlock a door", "key"),
    ("write on a blackboard", "chalk"),
    ("keep dry in the rain", "umbrella"),
    ("sweep the floor", "broom"),
    ("boil water", "kettle"),
    ("see in the dark", "flashlight"),
    ("dig a hole", "shovel"),
    ("measure length", "ruler"),
    ("take a photo", "camera"),
    ("cross a river", "bridge"),
    ("stick papers together", "glue"),
    ("dry their hair", "hairdryer"),
    ("eat soup", "spoon"),
    ("keep food cold", "fridge"),
    ("find their way", "map"),
    ("send a letter", "envelope"),
    ("wash their hands", "soap"),
    ("hang a picture", "nail"),
    ("weigh flour", "scale"),
    ("catch fish", "fishing rod"),
    ("lock a bicycle", "padlock"),
    ("cool a room", "fan"),
]

ANIMAL_FACTS = [
    ("has a very long neck", "giraffe"),
    ("gives us wool", "sheep"),
    ("builds dams in rivers", "beaver"),
    ("has a trunk", "elephant"),
    ("can change its colour", "chameleon"),
    ("lays the largest eggs", "ostrich"),
    ("carries its baby in a pouch", "kangaroo"),
    ("makes honey", "bee"),
    ("spins a web", "spider"),
    ("has black and white stripes", "zebra"),
    ("sleeps hanging upside down", "bat"),
    ("has eight arms", "octopus"),
    ("carries its house on its back", "snail"),
    ("gives us milk on a dairy farm", "cow"),
    ("barks at strangers", "dog"),
    ("hoots at night", "owl"),
    ("has a hump for long desert walks", "camel"),
    ("turns from a caterpillar into a winged insect", "butterfly"),
    ("waddles on ice and cannot fly", "penguin"),
    ("has a shell and moves very slowly on land", "tortoise"),
]

CAUSES = [
    ("has not eaten all day", "hungry"),
    ("has run a long race", "tired"),
    ("won the first prize", "proud"),
    ("lost a favourite toy", "sad"),
    ("heard a strange noise at night", "scared"),
    ("has been waiting in a queue for hours", "bored"),
    ("stood in the snow without a coat", "cold"),
    ("got a surprise birthday party", "delighted"),
    ("drank nothing on a hot day", "thirsty"),
    ("was told a very funny joke", "amused"),
    ("broke a friend's vase", "guilty"),
    ("is about to give a speech", "nervous"),
    ("was treated unfairly", "angry"),
    ("finished all the homework early", "relieved"),
    ("stayed up all night", "sleepy"),
]

YOUNG = [
    ("cat", "kitten"),
    ("dog", "puppy"),
    ("cow", "calf"),
    ("sheep", "lamb"),
    ("horse", "foal"),
    ("goose", "gosling"),
    ("frog", "tadpole"),
    ("bear", "cub"),
    ("kangaroo", "joey"),
    ("duck", "duckling"),
    ("deer", "fawn"),
    ("pig", "piglet"),
    ("swan", "cygnet"),
    ("hen", "chick"),
    ("owl", "owlet"),
]

CAPITALS = [
    ("France", "Paris"),
    ("Japan", "Tokyo"),
    ("Italy", "Rome"),
    ("Spain", "Madrid"),
    ("Egypt", "Cairo"),
    ("Canada", "Ottawa"),
    ("Australia", "Canberra"),
    ("Germany", "Berlin"),
    ("Kenya", "Nairobi"),
    ("Brazil", "Brasilia"),
    ("Peru", "Lima"),
    ("Norway", "Oslo"),
    ("Greece", "Athens"),
    ("Portugal", "Lisbon"),
    ("Ireland", "Dublin"),
    ("Poland", "Warsaw"),
    ("Thailand", "Bangkok"),
    ("Argentina", "Buenos Aires"),
    ("Mexico", "Mexico City"),
    ("India", "New Delhi"),
    ("Sweden", "Stockholm"),
    ("Austria", "Vienna"),
    ("Chile", "Santiago"),
    ("Turkey", "Ankara"),
    ("South Korea", "Seoul"),
]

# (id prefix, question template with {cue} and its article {a}, (cue, answer) pairs); answers of the other
# pairs serve as distractors.
PAIR_TABLES = [
    ("place", "Where would you most likely find {a} {cue}?", PLACES),
    ("use", "What do people use to {cue}?", USES),
    ("animal", "Which animal {cue}?", ANIMAL_FACTS),
    ("feel", "Someone who {cue} most likely feels what?", CAUSES),
    ("young", "What is a baby {cue} called?", YOUNG),
    ("capital", "What is the capital city of {cue}?", CAPITALS),
]
LABELS = ["A", "B", "C", "D", "E"]
CATEGORY_PHRASES = [
    "Which of these is {a} {cat}?",
    "Which one of the following is {a} {cat}?",
    "Pick the {cat} from this list.",
    "Which word names {a} {cat}?",
    "One of these is {a} {cat}. Which one?",
    "Which item below is {a} {cat}?",
    "Find the {cat} among these words.",
    "Which of the following would you call {a} {cat}?",
    "Name the {cat} in this list.",
]


def indefinite_article(word: str) -> str:
    return "an" if word[0].lower() in "aeiou" else "a"


def mcq_row(rng: random.Random, qid: str, question: str, answer: str, pool: list[str], concept: str) -> dict[str, Any]:
    distractors = rng.sample(sorted({p for p in pool if p != answer}), 4)
    choices = distractors + [answer]
    rng.shuffle(choices)
    return {
        "id": qid,
        "question": question,
        "question_concept": concept,
        "choices": {"label": LABELS, "text": choices},
        "answerKey": LABELS[choices.index(answer)],
    }


def mcq_rows(seed: int = 13) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    rows: list[dict[str, Any]] = []
    for cat, members in CATEGORIES.items():
        others = [m for c, ms in CATEGORIES.items() if c != cat for m in ms]
        for i, member in enumerate(members):
            question = CATEGORY_PHRASES[i % len(CATEGORY_PHRASES)].format(a=indefinite_article(cat), cat=cat)
            rows.append(mcq_row(rng, f"cat-{len(rows)}", question, member, others + [member], cat))
    words = [w for pair in ANTONYMS for w in pair]
    for a, b in ANTONYMS:
        for word, opposite in ((a, b), (b, a)):
            pool = [w for w in words if w not in (a, b)] + [opposite]
            rows.append(mcq_row(rng, f"ant-{len(rows)}", f'What is the opposite of "{word}"?', opposite, pool, word))
    for prefix, template, pairs in PAIR_TABLES:
        pool = [answer for _, answer in pairs]
        for cue, answer in pairs:
            question = template.format(cue=cue, a=indefinite_article(cue))
            rows.append(mcq_row(rng, f"{prefix}-{len(rows)}", question, answer, pool, cue))
    rng.shuffle(rows)
    return rows
