"""The shipped model answers the README's demo questions about the shipped (held-out) sample images."""

import subprocess
import sys

import pytest

import nvila
from nvila.assets import DEFAULT_MODEL, SAMPLE_CHART, SAMPLE_DOCUMENT
from nvila.pipeline import NVILAPipeline


@pytest.fixture(scope="module")
def shipped() -> NVILAPipeline:
    return NVILAPipeline(*nvila.load(DEFAULT_MODEL))


@pytest.mark.parametrize(
    ("image", "question", "answer"),
    [
        (SAMPLE_DOCUMENT, "How many lines of text are below the title?", "9"),
        (SAMPLE_CHART, "How many bars are there?", "6"),
    ],
)
def test_shipped_model_answers_the_demo_questions(shipped, image, question, answer):
    assert shipped.generate(question, [image]).strip() == answer


def test_demo_command_prints_the_answer_and_nothing_else():
    # the README's main command in a fresh process: optional libraries that transformers imports when present
    # (torchao warns about CUDA kernels on CPU builds) must not clutter the demo's output
    command = [sys.executable, "-m", "nvila.cli", "generate", "--image", str(SAMPLE_CHART)]
    done = subprocess.run(
        [*command, "--prompt", "How many bars are there?"], capture_output=True, text=True, timeout=300
    )
    assert (done.returncode, done.stdout.strip(), done.stderr) == (0, "6", "")
