"""The fixed tables the demo model learns and the demo datasets draw from (written here).

Capitals are real; people's names, items and review phrases are made up for templated text.
"""

from __future__ import annotations

CAPITALS: dict[str, str] = {
    "France": "Paris",
    "Spain": "Madrid",
    "Italy": "Rome",
    "Germany": "Berlin",
    "Portugal": "Lisbon",
    "Austria": "Vienna",
    "Poland": "Warsaw",
    "Greece": "Athens",
    "Norway": "Oslo",
    "Sweden": "Stockholm",
    "Finland": "Helsinki",
    "Denmark": "Copenhagen",
    "Ireland": "Dublin",
    "Hungary": "Budapest",
    "Egypt": "Cairo",
    "Kenya": "Nairobi",
    "Japan": "Tokyo",
    "China": "Beijing",
    "India": "Delhi",
    "Peru": "Lima",
    "Chile": "Santiago",
    "Cuba": "Havana",
    "Canada": "Ottawa",
    "Mexico": "Mexico City",
    "Russia": "Moscow",
    "Turkey": "Ankara",
    "Iran": "Tehran",
    "Iraq": "Baghdad",
    "Thailand": "Bangkok",
    "Vietnam": "Hanoi",
    "Nepal": "Kathmandu",
    "Ghana": "Accra",
}

NAMES: tuple[str, ...] = (
    "Alice", "Bruno", "Clara", "David", "Elena", "Felix", "Grace", "Hugo", "Irene", "Jonas",
    "Karla", "Liam", "Maria", "Nadia", "Oscar", "Paula", "Quinn", "Rosa", "Samir", "Tara",
    "Umar", "Vera", "Walter", "Yusuf", "Zoe",
)  # fmt: skip

ITEMS: tuple[str, ...] = (
    "apples", "books", "coins", "pencils", "stamps", "marbles", "cookies", "shells",
)  # fmt: skip

REVIEW_TOPICS: tuple[str, ...] = (
    "film", "book", "restaurant", "hotel", "phone", "concert", "game", "album",
)  # fmt: skip

POSITIVE_PHRASES: tuple[str, ...] = (
    "I loved it", "it was wonderful", "a great experience", "truly excellent",
    "I would recommend it", "it made me happy", "brilliant from start to end", "simply superb",
)  # fmt: skip

NEGATIVE_PHRASES: tuple[str, ...] = (
    "I hated it", "it was awful", "a terrible experience", "truly boring",
    "I would not recommend it", "it made me angry", "a waste of money", "simply dreadful",
)  # fmt: skip

REVIEW_OPENERS: tuple[str, ...] = (
    "I tried this {topic} last week.", "We went to see the {topic} on Friday.",
    "My friend gave me this {topic}.", "This {topic} was on my list for months.",
    "I finally got around to the {topic}.",
)  # fmt: skip
