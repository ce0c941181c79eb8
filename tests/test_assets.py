"""The shipped model answers the README's demo questions about the shipped (held-out) sample images, and answers
fresh synthetic charts well above chance: it counts bars and names a line's colour."""

import subprocess
import sys

import numpy as np
import pytest

import nvila
from nvila.assets import DEFAULT_MODEL, SAMPLE_CHART, SAMPLE_DOCUMENT
from nvila.pipeline import NVILAPipeline
from nvila.synth.charts import make_chart

#: Draws of fresh charts per kind; the seed is not one that wrote the training data (0, 1 and 2).
CHARTS, SEED = 30, 123


@pytest.fixture(scope="module")
def shipped() -> NVILAPipeline:
    return NVILAPipeline(*nvila.load(DEFAULT_MODEL))


@pytest.mark.parametrize(
    ("image", "question", "answer"),
    [
        (SAMPLE_DOCUMENT, "How many lines of text are below the title?", "9"),
        (SAMPLE_CHART, "What colour is the line?", "yellow"),
    ],
)
def test_shipped_model_answers_the_demo_questions(shipped, image, question, answer):
    assert shipped.generate(question, [image]).strip() == answer


def fresh_charts(kind: str) -> list:
    rng, samples = np.random.default_rng(SEED), []
    while len(samples) < CHARTS:
        sample = make_chart(rng, (192, 192), 1)
        if sample.scene["kind"] == kind:
            samples.append(sample)
    return samples


@pytest.mark.parametrize(
    ("kind", "question", "truth", "at_least"),
    [
        # 2-6 bars (chance about 20%); held-out accuracy 93.9%
        ("bar", "How many bars are there?", lambda scene: str(len(scene["bars"])), 0.7),
        # six colours (chance 16.7%); held-out accuracy 73.7%
        ("line", "What colour is the line?", lambda scene: scene["colour"], 0.45),
    ],
)
def test_shipped_model_reads_fresh_charts(shipped, kind, question, truth, at_least):
    samples = fresh_charts(kind)
    answers = [shipped.generate(question, [sample.images[0]]).strip() for sample in samples]
    right = sum(answer == truth(sample.scene) for answer, sample in zip(answers, samples))
    assert right >= at_least * CHARTS, f"{right}/{CHARTS} right: {answers}"
    assert len(set(answers)) > 2  # answers follow the image, not one fixed guess


@pytest.mark.slow  # a fresh interpreter (~6 s); `make test-slow` and CI run it
def test_demo_command_prints_the_answer_and_nothing_else():
    # the README's main command in a fresh process: optional libraries that transformers imports when present
    # (torchao warns about CUDA kernels on CPU builds) must not clutter the demo's output
    command = [sys.executable, "-m", "nvila.cli", "generate", "--image", str(SAMPLE_CHART)]
    done = subprocess.run(
        [*command, "--prompt", "What colour is the line?"], capture_output=True, text=True, timeout=300
    )
    assert (done.returncode, done.stdout.strip(), done.stderr) == (0, "yellow", "")
