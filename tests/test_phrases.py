"""Noun phrases without a parser: the answers span clozes ask for."""

import pytest

from distillqa.questions.phrases import noun_phrases


def phrases(sentence: str, max_words: int = 8, taken=()) -> list[str]:
    return [sentence[a:b] for a, b in noun_phrases(sentence, max_words, taken)]


@pytest.mark.parametrize(
    ("sentence", "expected"),
    [
        # verbs and adverbs end phrases ("behave", "plastically"); adjectives stay before their noun
        ("Deeper in the Earth, rocks behave plastically.", ["Earth", "rocks"]),
        ("Pharmacists advise on the proper use of prescription drugs.", ["Pharmacists", "proper use of prescription drugs"]),
        # "of", "and", "or" join phrases; a phrase never starts with "the"
        ("The embargo caused an oil crisis with effects on global politics and the global economy.",
         ["embargo", "oil crisis", "effects", "global politics and the global economy"]),
        # a noun-or-verb in -s after a singular subject, before a function word, is the verb
        ("Basalt forms when lava cools.", ["Basalt", "lava"]),
        ("Sandstone is made of quartz grains and cement.", ["Sandstone", "quartz grains and cement"]),
        # after "to"/"can" a word that can be a verb is one
        ("These studies can also give useful information.", ["studies", "useful information"]),
    ],
)
def test_noun_phrases(sentence, expected):
    assert phrases(sentence) == expected


def test_word_limit_splits_joined_phrases():
    sentence = "The study of the positions of rock units and their deformation."
    assert phrases(sentence) == ["study of the positions of rock units", "deformation"]
    assert phrases(sentence, max_words=3) == ["study", "positions", "rock units", "deformation"]


def test_taken_spans_are_left_out():
    sentence = "The first volume of Principles of Geology appeared in London."
    start = sentence.index("Principles of Geology")
    taken = [(start, start + len("Principles of Geology"))]
    assert phrases(sentence, taken=taken) == ["volume", "London"]  # not "volume of Principles of Geology"
