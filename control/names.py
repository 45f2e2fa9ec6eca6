"""Generated app names, Heroku's way: ``adjective-noun-1234`` (``apps:create`` with no name).

Pure: the caller passes the random source, so a test names what it gets.
About 60 x 60 x 9000 = 32 million names; the API draws again on a taken one.
"""

from __future__ import annotations

import random

from control.rules import APP_NAME

ADJECTIVES = (
    "ancient", "autumn", "billowing", "bitter", "black", "blue", "bold", "brave",
    "calm", "cold", "cool", "crimson", "damp", "dark", "dawn", "delicate",
    "divine", "dry", "empty", "falling", "fancy", "flat", "floral", "fragrant",
    "frosty", "gentle", "green", "hidden", "holy", "icy", "jolly", "late",
    "lingering", "little", "lively", "long", "lucky", "misty", "morning", "muddy",
    "mute", "nameless", "noisy", "odd", "old", "orange", "patient", "plain",
    "polished", "proud", "purple", "quiet", "rapid", "red", "restless", "rough",
    "round", "royal", "shiny", "shy", "silent", "small", "snowy", "solitary",
    "sparkling", "spring", "still", "summer", "sweet", "tiny", "twilight", "wandering",
    "weathered", "white", "wild", "winter", "wispy", "withered", "young",
)  # fmt: skip
NOUNS = (
    "bird", "breeze", "brook", "bush", "butterfly", "cherry", "cloud", "darkness",
    "dawn", "dew", "dream", "dust", "feather", "field", "fire", "firefly",
    "flower", "fog", "forest", "frog", "frost", "glade", "glitter", "grass",
    "haze", "hill", "lake", "leaf", "meadow", "moon", "morning", "mountain",
    "night", "paper", "pine", "pond", "rain", "resonance", "river", "sea",
    "shadow", "shape", "silence", "sky", "smoke", "snow", "snowflake", "sound",
    "star", "sun", "sunset", "surf", "thunder", "tree", "violet", "voice",
    "water", "waterfall", "wave", "wildflower", "wind", "wood",
)  # fmt: skip


def generate(rng: random.Random) -> str:
    """One name; always a valid app name (``rules.APP_NAME``)."""
    name = f"{rng.choice(ADJECTIVES)}-{rng.choice(NOUNS)}-{rng.randrange(1000, 10000)}"
    assert APP_NAME.fullmatch(name), name
    return name
