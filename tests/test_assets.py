"""The shipped model answers the README's demo questions about the shipped (held-out) sample images."""

import pytest

import nvila
from nvila.assets import DEFAULT_MODEL, SAMPLE_DOCUMENT, SAMPLE_IMAGE
from nvila.pipeline import NVILAPipeline


@pytest.fixture(scope="module")
def shipped() -> NVILAPipeline:
    return NVILAPipeline(*nvila.load(DEFAULT_MODEL))


@pytest.mark.parametrize(
    ("image", "question", "answer"),
    [
        (SAMPLE_IMAGE, "How many shapes are there?", "4"),
        (SAMPLE_DOCUMENT, "How many lines of text are below the title?", "9"),
    ],
)
def test_shipped_model_answers_the_demo_questions(shipped, image, question, answer):
    assert shipped.generate(question, [image]).strip() == answer
