"""The benchmark registry: name -> loader, prompt format, metric and generation length.

Owns: the `Benchmark` record, `BENCHMARKS`, the prompt templates (lmms-eval's default prompts for the public
benchmarks, so scores compare with published ones) and the per-sample scorers built on `nvila.eval.metrics`.
A scorer returns the score and the answer it read from the output; `None` means no answer could be read
(counted as `no_answer` and scored 0). Does not own reading files (`loaders`) or running a model (`runner`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from nvila.errors import ConfigError
from nvila.eval import loaders
from nvila.eval.loaders import LETTERS, EvalSample, parse_interval
from nvila.eval.metrics import anls, extract_choice, normalize_vqa_answer, relaxed_accuracy, temporal_iou, vqa_accuracy


@dataclass(frozen=True)
class Score:
    """One sample's score in [0, 1] and the answer read from the output (None: nothing readable)."""

    value: float
    answer: str | None
    interval: tuple[float, float] | None = None  #: localization: the interval read from the output
    gold_interval: tuple[float, float] | None = None  #: localization: the gold interval (set: an IoU score)


Scorer = Callable[[str, EvalSample], Score]


@dataclass(frozen=True)
class Benchmark:
    """A benchmark: where its samples come from, how it is asked and how answers are scored."""

    name: str
    description: str
    load: Callable[[Path], list[EvalSample]]  #: --data folder (or file) -> samples
    score: Scorer
    metric: str  #: what the per-sample scores average to
    #: str.format template with {question} and {options} ("\nA. ...\nB. ..." for multiple choice, else "")
    prompt: str
    max_new_tokens: int  #: default generation length (lmms-eval's)
    #: (data, evaluated samples) -> per-task score of a trivial baseline, shown beside the model's
    baseline: Callable[[Path, list[EvalSample]], dict[str, float]] | None = None
    #: data -> what identifies the data set (e.g. a generator's seed, sizes and content hash), for the summary
    describe_data: Callable[[Path], dict] | None = None

    def format_prompt(self, sample: EvalSample) -> str:
        options = "".join(f"\n{LETTERS[k]}. {text}" for k, text in enumerate(sample.options or []))
        return self.prompt.format(question=sample.question, options=options)


# ---- scorers -----------------------------------------------------------------------------------------------
def _text_or_none(output: str) -> str | None:
    return output.strip() or None


def score_anls(output: str, sample: EvalSample) -> Score:
    answer = _text_or_none(output)
    return Score(anls(answer, sample.answers) if answer else 0.0, answer)


def score_vqa(output: str, sample: EvalSample) -> Score:
    answer = _text_or_none(output)
    return Score(vqa_accuracy(answer, sample.answers) if answer else 0.0, answer)


def score_relaxed(output: str, sample: EvalSample) -> Score:
    answer = _text_or_none(output)
    return Score(float(relaxed_accuracy(answer, sample.answers[0])) if answer else 0.0, answer)


def score_choice(output: str, sample: EvalSample) -> Score:
    """The option letter read by `extract_choice` against the gold letter; no letter: no answer."""
    letter = extract_choice(output, sample.options or len(LETTERS))
    return Score(float(letter == sample.answers[0]), letter)


def score_interval(output: str, sample: EvalSample) -> Score:
    """IoU of the two times read from the output with the gold interval; fewer than two: no answer.

    LITA's evaluator falls back to [0, duration] when it cannot read two times; here that is a no-answer.
    """
    duration = sample.meta.get("duration")
    gold = tuple(sample.meta.get("interval") or parse_interval(sample.answers[0], duration))
    predicted = parse_interval(output, duration)
    if predicted is None:
        return Score(0.0, None, None, gold)
    answer = f"{predicted[0]:g} - {predicted[1]:g} seconds"
    return Score(temporal_iou(predicted, gold), answer, predicted, gold)


# synth: answers are short exact strings; each source normalises what does not change the answer.
_SYNTH_INTERVAL = re.compile(r"^\s*\d+(?:\.\d+)?\s*-\s*\d+(?:\.\d+)?\s*seconds\s*$")
_EDGES = " \t\n.,;:!?\"'`*"


def _plain(text: str) -> str:
    """Lowercase, whitespace collapsed, quotes and end punctuation stripped."""
    return " ".join(text.lower().split()).strip(_EDGES)


def _number_or_plain(text: str) -> str:
    """Numbers compared as numbers ("39.0" == "39"), other text as `_plain`."""
    plain = _plain(text).replace(",", "")
    try:
        return f"{float(plain):g}"
    except ValueError:
        return plain


#: source -> normaliser of the synth exact match; sources not listed use `normalize_vqa_answer`.
SYNTH_NORMALIZERS: dict[str, Callable[[str], str]] = {
    "documents": _plain,  # words read off the page: case and spacing do not count, spelling does
    "charts": _number_or_plain,  # values and bar / point labels
    "shapes": normalize_vqa_answer,  # counts ("two" == "2"), colours, shapes, yes / no
    "events": normalize_vqa_answer,
}


def score_synth(output: str, sample: EvalSample) -> Score:
    """Exact match after the source's normalisation; localization answers ("a - b seconds") by IoU."""
    if _SYNTH_INTERVAL.match(sample.answers[0]):
        return score_interval(output, sample)
    normalize = SYNTH_NORMALIZERS.get(sample.task, normalize_vqa_answer)
    answer = normalize(output)
    if not answer:
        return Score(0.0, None)
    return Score(float(answer == normalize(sample.answers[0])), answer)


def synth_baseline(data: Path, samples: list[EvalSample]) -> dict[str, float]:
    """`majority_baseline` per source: the most common train answer per (source, template), scored by exact
    match on the held-out records evaluated (all of them without --limit). Needs train.jsonl beside
    heldout.jsonl; without it, the manifest's held-out baseline (whole split) or nothing."""
    from nvila.synth.writer import majority_baseline

    heldout = loaders.synth_records_file(data)
    train = heldout.parent / "train.jsonl"
    if not train.is_file():
        manifest = heldout.parent / "manifest.json"
        if manifest.is_file():
            return loaders.read_json(manifest).get("majority_baseline", {}).get("heldout", {})
        return {}
    evaluated = {s.meta["record"] for s in samples}
    records = [r for r in loaders.read_jsonl(heldout) if str(r.get("id")) in evaluated]
    return majority_baseline(records, fit=loaders.read_jsonl(train))


def synth_dataset(data: Path) -> dict:
    """Seed, sizes, counts and content hash from the dataset's manifest.json ({} without one)."""
    manifest = loaders.synth_records_file(data).parent / "manifest.json"
    if not manifest.is_file():
        return {}
    m = loaders.read_json(manifest)
    keys = ("format", "seed", "image_size", "video_size", "max_questions", "tasks", "content_hash")
    return {k: m[k] for k in keys if k in m}


# ---- the registry ------------------------------------------------------------------------------------------
SHORT_ANSWER = "{question}{options}\nAnswer the question using a single word or phrase."
CHOICE = "{question}{options}\nAnswer with the option's letter from the given choices directly."
VIDEO_CHOICE = (
    "Select the best answer to the following multiple-choice question based on the video. Respond with only "
    "the letter (A, B, C, or D) of the correct option.\n{question}{options}\nThe best answer is:"
)
LOCALIZATION = "{question}{options}\nAnswer with the start and end times in seconds, as in '12.0 - 30.5 seconds'."

BENCHMARKS: dict[str, Benchmark] = {
    b.name: b
    for b in [
        Benchmark("docvqa", "DocVQA val (ANLS)", loaders.load_docvqa, score_anls, "anls", SHORT_ANSWER, 32),
        Benchmark("infovqa", "InfographicVQA val (ANLS)", loaders.load_infovqa, score_anls, "anls", SHORT_ANSWER, 32),
        Benchmark("textvqa", "TextVQA val (VQA accuracy)", loaders.load_textvqa, score_vqa, "vqa_accuracy",
                  SHORT_ANSWER, 16),
        Benchmark("chartqa", "ChartQA test, human + augmented (relaxed accuracy)", loaders.load_chartqa,
                  score_relaxed, "relaxed_accuracy", SHORT_ANSWER, 16),
        Benchmark("ai2d", "AI2D test (multiple choice)", loaders.load_ai2d, score_choice, "accuracy", CHOICE, 16),
        Benchmark("vqav2", "VQAv2 val (VQA accuracy)", loaders.load_vqav2, score_vqa, "vqa_accuracy",
                  SHORT_ANSWER, 16),
        Benchmark("videomme", "Video-MME, frames only (multiple choice)", loaders.load_videomme, score_choice,
                  "accuracy", VIDEO_CHOICE, 16),
        Benchmark("activitynet_rtl", "ActivityNet-RTL temporal localization (mean IoU)",
                  loaders.load_activitynet_rtl, score_interval, "mean_iou", LOCALIZATION, 64),
        Benchmark("synth", "nvila synth held-out split (exact match; IoU for 'a - b seconds' answers)",
                  loaders.load_synth, score_synth, "exact_match/iou", "{question}{options}", 32, synth_baseline,
                  synth_dataset),
    ]
}  # fmt: skip


def get_benchmark(name: str) -> Benchmark:
    """The benchmark called `name`; `ConfigError` listing the known ones otherwise."""
    try:
        return BENCHMARKS[name]
    except KeyError:
        raise ConfigError(f"unknown benchmark {name!r}; known benchmarks: {', '.join(BENCHMARKS)}") from None
