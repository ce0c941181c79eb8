"""Benchmark metrics against hand-worked values, including the quirks of the reference implementations."""

from __future__ import annotations

import math

import pytest

from nvila.eval import (
    anls,
    extract_choice,
    localization_metrics,
    multiple_choice_accuracy,
    normalize_vqa_answer,
    relaxed_accuracy,
    temporal_iou,
    vqa_accuracy,
)

# --- VQA normalization ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        # number words -> digits, case-insensitive
        ("Two", "2"),
        ("none", "0"),
        ("ten dogs", "10 dogs"),
        ("eleven", "eleven"),  # the map stops at ten
        # articles removed as whole words only
        ("The cat", "cat"),
        ("an apple", "apple"),
        ("a", ""),
        ("theater", "theater"),
        # contractions map (apostrophe-less forms get their apostrophe back)
        ("dont", "don't"),
        ("Isnt", "isn't"),
        ("yall", "y'all"),
        ("oclock", "o'clock"),
        # "'s" is split off before anything else
        ("man's hat", "man 's hat"),
        # periods: kept before a digit, dropped elsewhere
        ("2.5", "2.5"),
        ("yes.", "yes"),
        ("5.", "5"),
        ("e.g", "eg"),
        # commas and question marks are deleted outright, so "1,000" reads as a number
        ("1,000", "1000"),
        ("yes?", "yes"),
        ("red,white", "redwhite"),
        # other marks: deleted when one touches a space, else replaced by a space
        ("black-and-white", "black and white"),
        ("black - white", "black white"),
        ("red/blue", "red blue"),
        ("(yes)", "yes"),
        ("wow!", "wow"),
        # apostrophes are not punctuation
        ("don't", "don't"),
        # whitespace: tabs, newlines and runs of spaces collapse
        ("  red \n\t car  ", "red car"),
        ("Two dogs!", "2 dogs"),
    ],
)
def test_normalize_vqa_answer(raw, expected):
    assert normalize_vqa_answer(raw) == expected


def test_normalize_punctuation_decision_reads_the_input_not_the_partial_output():
    # " -" occurs in the input, so every "-" is deleted, including the one inside "x-y".
    assert normalize_vqa_answer("x-y -z") == "xy z"
    assert normalize_vqa_answer("x-y-z") == "x y z"


def test_normalize_strips_at_most_32_periods_like_the_reference():
    # The reference passes re.UNICODE (32) as `count`: periods 33..40 survive.
    assert normalize_vqa_answer("x." * 40) == "x" * 32 + "x." * 8


# --- VQA accuracy -----------------------------------------------------------------------------------------------


def ten_answers(matching: int) -> list[str]:
    """`matching` copies of "cat", then distinct other answers up to 10."""
    return ["cat"] * matching + [f"other{i}" for i in range(10 - matching)]


@pytest.mark.parametrize(
    ("matching", "expected"),
    # leave-one-out by hand: n matches -> [n * min(1, (n-1)/3) + (10-n) * min(1, n/3)] / 10
    [(0, 0.0), (1, 0.3), (2, 0.6), (3, 0.9), (4, 1.0), (10, 1.0)],
)
def test_vqa_accuracy_leave_one_out_values(matching, expected):
    assert vqa_accuracy("cat", ten_answers(matching)) == pytest.approx(expected)


def test_vqa_accuracy_normalizes_prediction_and_answers():
    answers = ["two", "2", "Two.", "3", "3", "3", "3", "4", "5", "6"]
    assert vqa_accuracy("2", answers) == pytest.approx(0.9)
    assert vqa_accuracy("The two!", answers) == pytest.approx(0.9)
    assert vqa_accuracy("a dog", ["dog"] * 3 + ten_answers(0)[:7]) == pytest.approx(0.9)
    assert vqa_accuracy("dont", ["don't"] * 10) == pytest.approx(1.0)


def test_vqa_accuracy_with_other_answer_counts():
    # 5 answers, 2 match: leaving out a match leaves 1 (1/3), leaving out another leaves 2 (2/3).
    assert vqa_accuracy("cat", ["cat", "cat", "a", "b", "c"]) == pytest.approx((2 * (1 / 3) + 3 * (2 / 3)) / 5)
    # A single answer never has anyone else agreeing.
    assert vqa_accuracy("cat", ["cat"]) == 0.0


def test_vqa_accuracy_needs_answers():
    with pytest.raises(ValueError):
        vqa_accuracy("cat", [])


# --- ANLS -------------------------------------------------------------------------------------------------------


def test_anls_exact_match_ignores_case_and_whitespace():
    assert anls("Hello  World", ["hello world "]) == 1.0


@pytest.mark.parametrize(
    ("prediction", "answer", "expected"),
    [
        ("abcdefghij", "abcdefghix", 0.9),  # 1 edit / 10
        ("kitten", "sitting", 1 - 3 / 7),  # classic distance 3
        ("flaw", "lawn", 0.5),  # distance 2 / 4 -> NL 0.5 exactly is kept
        ("ab", "ac", 0.5),
        ("abcde", "abxyz", 0.0),  # NL 0.6 -> 0.4 < 0.5 -> 0
        ("abc", "xyz", 0.0),
    ],
)
def test_anls_values(prediction, answer, expected):
    assert anls(prediction, [answer]) == pytest.approx(expected)


def test_anls_takes_the_best_answer():
    assert anls("abcd", ["wxyz", "abce", "abxx"]) == pytest.approx(0.75)


def test_anls_threshold_is_configurable():
    assert anls("ab", ["ac"], threshold=0.6) == 0.0
    assert anls("abcde", ["abxyz"], threshold=0.4) == pytest.approx(0.4)


@pytest.mark.parametrize(
    ("prediction", "answer", "expected"),
    [
        ("", "", 1.0),  # both empty: length 0 -> NL 0
        ("   ", "", 1.0),  # empty after normalization, raw length 3, distance 0
        ("", "abc", 0.0),
        ("abc", "", 0.0),
    ],
)
def test_anls_empty_strings(prediction, answer, expected):
    assert anls(prediction, [answer]) == expected


def test_anls_divides_by_raw_lengths_like_the_reference():
    # Distance on the normalized strings ("abc" vs "abd" = 1), length on the raw ones (5): 1 - 1/5.
    assert anls(" abc ", ["abd"]) == pytest.approx(0.8)
    assert anls("abd", [" abc "]) == pytest.approx(0.8)
    # Raw length via .upper(): "ß".upper() == "SS", so NL = 1/2 and the score survives the threshold.
    assert anls("ß", ["s"]) == pytest.approx(0.5)
    assert anls("s", ["ß"]) == pytest.approx(0.5)


def test_anls_needs_answers():
    with pytest.raises(ValueError):
        anls("x", [])


# --- ChartQA relaxed accuracy -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("prediction", "target", "expected"),
    [
        # 5% boundary, inclusive on both sides
        ("105", "100", True),
        ("95", "100", True),
        ("105.1", "100", False),
        ("94.9", "100", False),
        ("-98", "-100", True),
        ("1e2", "100", True),
        # percentages read as fractions
        ("45%", "45%", True),
        ("0.45", "45%", True),
        ("46%", "45%", True),  # 0.46 vs 0.45: 2.2%
        ("45", "45%", False),  # 45 vs 0.45
        # thousands separators
        ("1,000", "1000", True),
        ("1,040", "1000", True),
        ("1,060", "1000", False),
        ("12,345.6", "12345.6", True),
        # a zero target falls back to exact string match
        ("0", "0", True),
        ("0.0", "0", False),
        ("0.01", "0", False),
        ("0", "0%", False),
        # text: case-insensitive exact match, nothing stripped
        ("Yes", "yes", True),
        ("yes ", "yes", False),
        ("blue", "red", False),
        ("about 100", "100", False),
    ],
)
def test_relaxed_accuracy(prediction, target, expected):
    assert relaxed_accuracy(prediction, target) is expected


def test_relaxed_accuracy_tolerance_is_configurable():
    assert relaxed_accuracy("110", "100") is False
    assert relaxed_accuracy("110", "100", tolerance=0.1) is True


# --- multiple choice ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        ("B", "B"),
        ("b", "B"),
        ("(B)", "B"),
        ("B.", "B"),
        ("**C**", "C"),
        ("  D  \n", "D"),
        ("The answer is B", "B"),
        ("The answer is B.", "B"),
        ("The correct answer is (D).", "D"),
        ("Answer: C) dog", "C"),
        ("answer: **A**", "A"),
        ("B. dog", "B"),
        ("C) dog", "C"),
        ("(A) cat, because it purrs", "A"),
        ("D\nBecause the chart rises.", "D"),
        ("I think it's C because of the shadow", "C"),  # "I" is not an option of four
        ("Looking at the figure, [B] fits best", "B"),
        ("Answer: A. Wait, let me check again. Final answer: C", "C"),  # the last cue wins
        ("The answer is a dog with a hat, so (B)", "B"),  # lowercase "a" after a cue is an article
    ],
)
def test_extract_choice_letter_formats(response, expected):
    assert extract_choice(response, 4) == expected


@pytest.mark.parametrize(
    "response",
    [
        "",
        "I don't know",
        "A or B",  # two standalone letters: ambiguous
        "Both (A) and (C) look plausible",
        "E",  # not one of four options
        "Answer: E",
    ],
)
def test_extract_choice_returns_none_without_a_single_answer(response):
    assert extract_choice(response, 4) is None


def test_extract_choice_reads_option_text():
    options = ["cat", "dog", "bird"]
    assert extract_choice("dog", options) == "B"
    assert extract_choice("It is a dog.", options) == "B"
    assert extract_choice("A dog.", options) == "B"  # the article "A" does not win over the named option
    assert extract_choice("I see a Bird", options) == "C"
    assert extract_choice("cats and dogs", options) is None  # whole words only
    assert extract_choice("a cat or a dog", options) is None  # two options named
    assert extract_choice("hot dog", ["dog", "hot dog"]) == "B"  # the longer text contains the shorter
    assert extract_choice("Answer: A", options) == "A"  # letters still win over text


def test_extract_choice_rejects_bad_choices():
    with pytest.raises(TypeError):
        extract_choice("A", "ABCD")
    with pytest.raises(ValueError):
        extract_choice("A", 0)
    with pytest.raises(ValueError):
        extract_choice("A", 27)


def test_multiple_choice_accuracy():
    responses = ["A", "(B)", "no idea", "The answer is D"]
    assert multiple_choice_accuracy(responses, ["A", "B", "C", "C"], 4) == pytest.approx(0.5)
    assert multiple_choice_accuracy(["dog", "C"], ["b", "C"], [["cat", "dog"], 4]) == pytest.approx(1.0)


def test_multiple_choice_accuracy_checks_lengths():
    with pytest.raises(ValueError):
        multiple_choice_accuracy(["A"], ["A", "B"], 4)
    with pytest.raises(ValueError):
        multiple_choice_accuracy(["A", "B"], ["A", "B"], [4])
    with pytest.raises(ValueError):
        multiple_choice_accuracy([], [], 4)


# --- temporal localization --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pred", "gt", "expected"),
    [
        ((0, 10), (0, 10), 1.0),  # identical
        ((0, 10), (5, 15), 5 / 15),  # overlap
        ((2, 4), (0, 10), 2 / 10),  # contained
        ((0, 1), (2, 3), 0.0),  # disjoint
        ((0, 5), (5, 10), 0.0),  # touching
        ((10, 0), (0, 10), 1.0),  # reversed: swapped
        ((15, 5), (0, 10), 5 / 15),
        ((5, 5), (5, 5), 0.0),  # zero-length union
        ((5, 5), (0, 10), 0.0),
        ((math.nan, 3), (0, 10), 0.0),
        ((0, math.inf), (0, 10), 0.0),
    ],
)
def test_temporal_iou(pred, gt, expected):
    assert temporal_iou(pred, gt) == pytest.approx(expected)
    assert temporal_iou(gt, pred) == pytest.approx(expected)


def test_localization_metrics():
    gts = [(0.0, 10.0)] * 5
    preds = [(0.0, 10.0), (0.0, 7.0), (0.0, 5.0), (0.0, 4.0), None]  # IoU 1, 0.7, 0.5, 0.4, 0
    metrics = localization_metrics(preds, gts)
    assert set(metrics) == {"mean_iou", "precision@0.5", "precision@0.7"}
    assert metrics["mean_iou"] == pytest.approx(2.6 / 5)
    assert metrics["precision@0.5"] == pytest.approx(3 / 5)  # IoU exactly at the threshold counts
    assert metrics["precision@0.7"] == pytest.approx(2 / 5)


def test_localization_metrics_custom_thresholds():
    metrics = localization_metrics([(0, 3), (8, 10)], [(0, 10), (0, 10)], thresholds=(0.2, 0.3))
    assert metrics == pytest.approx({"mean_iou": 0.25, "precision@0.2": 1.0, "precision@0.3": 0.5})


def test_localization_metrics_checks_lengths():
    with pytest.raises(ValueError):
        localization_metrics([(0, 1)], [])
    with pytest.raises(ValueError):
        localization_metrics([], [])
