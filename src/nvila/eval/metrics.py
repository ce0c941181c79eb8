"""Benchmark metrics as pure functions of strings and numbers: VQA accuracy, ANLS, ChartQA relaxed accuracy,
multiple-choice letter extraction and temporal-localization IoU.

Each metric follows a named community reference; where a reference has a quirk that changes scores, the
quirk is kept and commented. This module scores one prediction at a time; it owns no model, prompt or
dataset code.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

# ---------------------------------------------------------------------------------------------------------------
# VQA accuracy (VQAv2 / TextVQA)
# ---------------------------------------------------------------------------------------------------------------

# Tables of the official VQA evaluation (GT-Vision-Lab/VQA `vqaEval.py`), shared verbatim by the EvalAI answer
# processor (facebookresearch/mmf) that the TextVQA evaluator and the VQAv2 submission converter use. Keys with
# capitals ("Im", "Ive", ...) can never match lowercased text; they are kept so the table stays the reference's.
_CONTRACTIONS = {
    "aint": "ain't", "arent": "aren't", "cant": "can't", "couldve": "could've", "couldnt": "couldn't",
    "couldn'tve": "couldn't've", "couldnt've": "couldn't've", "didnt": "didn't", "doesnt": "doesn't",
    "dont": "don't", "hadnt": "hadn't", "hadnt've": "hadn't've", "hadn'tve": "hadn't've", "hasnt": "hasn't",
    "havent": "haven't", "hed": "he'd", "hed've": "he'd've", "he'dve": "he'd've", "hes": "he's", "howd": "how'd",
    "howll": "how'll", "hows": "how's", "Id've": "I'd've", "I'dve": "I'd've", "Im": "I'm", "Ive": "I've",
    "isnt": "isn't", "itd": "it'd", "itd've": "it'd've", "it'dve": "it'd've", "itll": "it'll", "let's": "let's",
    "maam": "ma'am", "mightnt": "mightn't", "mightnt've": "mightn't've", "mightn'tve": "mightn't've",
    "mightve": "might've", "mustnt": "mustn't", "mustve": "must've", "neednt": "needn't", "notve": "not've",
    "oclock": "o'clock", "oughtnt": "oughtn't", "ow's'at": "'ow's'at", "'ows'at": "'ow's'at", "'ow'sat": "'ow's'at",
    "shant": "shan't", "shed've": "she'd've", "she'dve": "she'd've", "she's": "she's", "shouldve": "should've",
    "shouldnt": "shouldn't", "shouldnt've": "shouldn't've", "shouldn'tve": "shouldn't've",
    "somebody'd": "somebodyd", "somebodyd've": "somebody'd've", "somebody'dve": "somebody'd've",
    "somebodyll": "somebody'll", "somebodys": "somebody's", "someoned": "someone'd", "someoned've": "someone'd've",
    "someone'dve": "someone'd've", "someonell": "someone'll", "someones": "someone's", "somethingd": "something'd",
    "somethingd've": "something'd've", "something'dve": "something'd've", "somethingll": "something'll",
    "thats": "that's", "thered": "there'd", "thered've": "there'd've", "there'dve": "there'd've",
    "therere": "there're", "theres": "there's", "theyd": "they'd", "theyd've": "they'd've",
    "they'dve": "they'd've", "theyll": "they'll", "theyre": "they're", "theyve": "they've", "twas": "'twas",
    "wasnt": "wasn't", "wed've": "we'd've", "we'dve": "we'd've", "weve": "we've", "werent": "weren't",
    "whatll": "what'll", "whatre": "what're", "whats": "what's", "whatve": "what've", "whens": "when's",
    "whered": "where'd", "wheres": "where's", "whereve": "where've", "whod": "who'd", "whod've": "who'd've",
    "who'dve": "who'd've", "wholl": "who'll", "whos": "who's", "whove": "who've", "whyll": "why'll",
    "whyre": "why're", "whys": "why's", "wont": "won't", "wouldve": "would've", "wouldnt": "wouldn't",
    "wouldnt've": "wouldn't've", "wouldn'tve": "wouldn't've", "yall": "y'all", "yall'll": "y'all'll",
    "y'allll": "y'all'll", "yall'd've": "y'all'd've", "y'alld've": "y'all'd've", "y'all'dve": "y'all'd've",
    "youd": "you'd", "youd've": "you'd've", "you'dve": "you'd've", "youll": "you'll", "youre": "you're",
    "youve": "you've",
}  # fmt: skip
_NUMBER_WORDS = {
    "none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5", "six": "6",
    "seven": "7", "eight": "8", "nine": "9", "ten": "10",
}  # fmt: skip
_ARTICLES = frozenset({"a", "an", "the"})
_PUNCTUATION = ';/[]"{}()=+\\_-><@`,?!'  # one character each; the order does not change the result
# The reference writes "(?!<=\d)(\.)(?!\d)": a typo for a lookbehind, so in effect a period is removed unless a
# digit follows it ("2.5" keeps it, "end." and "5." lose it).
_PERIOD = re.compile(r"\.(?!\d)")


def _process_punctuation(text: str) -> str:
    """Delete each punctuation mark that touches a space, else replace it by a space; drop periods before
    anything but a digit.

    The reference also deletes every mark when a digit,digit comma is present; `normalize_vqa_answer` removes
    all commas first ("1,000" -> "1000"), so that rule can never fire here and is left out.
    """
    out = text
    for p in _PUNCTUATION:
        # The test looks at the input text, not at `out`, exactly as the reference does.
        out = out.replace(p, "" if p + " " in text or " " + p in text else " ")
    # The reference passes re.UNICODE (= 32) where `count` goes, so it strips at most 32 periods.
    return _PERIOD.sub("", out, count=32)


def _process_digit_article(text: str) -> str:
    """Lowercase, map number words to digits, drop articles, expand contractions, join with single spaces."""
    words = [_NUMBER_WORDS.get(w, w) for w in text.lower().split()]
    return " ".join(_CONTRACTIONS.get(w, w) for w in words if w not in _ARTICLES)


def normalize_vqa_answer(text: str) -> str:
    """Normalize an answer as the EvalAI answer processor of the VQAv2/TextVQA evaluations does.

    Steps: lowercase; delete "," and "?"; split "'s" off ("man's" -> "man 's"); tabs/newlines to spaces; the
    official VQA punctuation rules; number words to digits; drop a/an/the; contractions; single spaces.
    """
    text = text.lower().replace(",", "").replace("?", "").replace("'s", " 's").strip()
    text = text.replace("\n", " ").replace("\t", " ").strip()
    return _process_digit_article(_process_punctuation(text))


def vqa_accuracy(prediction: str, answers: Sequence[str]) -> float:
    """VQA soft accuracy: mean over leave-one-out subsets of min(#other answers equal to prediction / 3, 1).

    `answers` are the (normally 10) human answers. Prediction and answers are all normalized with
    `normalize_vqa_answer`, as the TextVQA evaluator does. Against 10 answers, matching 1, 2, 3 or 4+ of them
    scores 0.3, 0.6, 0.9 or 1.0. With a single answer the score is always 0: no other annotator agrees.
    """
    if not answers:
        raise ValueError("vqa_accuracy needs at least one human answer")
    pred = normalize_vqa_answer(prediction)
    gts = [normalize_vqa_answer(a) for a in answers]
    scores = [min(1.0, sum(g == pred for j, g in enumerate(gts) if j != i) / 3) for i in range(len(gts))]
    return sum(scores) / len(scores)


# ---------------------------------------------------------------------------------------------------------------
# ANLS (DocVQA, InfographicVQA)
# ---------------------------------------------------------------------------------------------------------------


def _levenshtein(a: str, b: str) -> int:
    """Edit distance with unit-cost insertions, deletions and substitutions."""
    if len(a) < len(b):
        a, b = b, a
    row = list(range(len(b) + 1))
    for i, ca in enumerate(a, start=1):
        prev_diag, row[0] = row[0], i
        for j, cb in enumerate(b, start=1):
            prev_diag, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev_diag + (ca != cb))
    return row[-1]


def anls(prediction: str, answers: Sequence[str], threshold: float = 0.5) -> float:
    """Average Normalized Levenshtein Similarity of one prediction, as the official DocVQA/InfographicVQA script.

    Both strings are lowercased with whitespace collapsed; NL = distance / max(length); the score is
    1 - min NL over `answers`, set to 0 when below `threshold` (so NL = 0.5 exactly still scores 0.5).
    Two empty strings score 1.
    """
    if not answers:
        raise ValueError("anls needs at least one gold answer")
    pred = " ".join(prediction.lower().split())
    distances = []
    for answer in answers:
        gold = " ".join(answer.lower().split())
        # Reference quirk: the length is taken from the raw strings (after .upper()), not the normalized ones.
        length = max(len(answer.upper()), len(prediction.upper()))
        distances.append(0.0 if length == 0 else _levenshtein(gold, pred) / length)
    score = 1.0 - min(distances)
    return score if score >= threshold else 0.0


# ---------------------------------------------------------------------------------------------------------------
# ChartQA relaxed accuracy
# ---------------------------------------------------------------------------------------------------------------

_THOUSANDS = re.compile(r"[+-]?\d{1,3}(?:,\d{3})+(?:\.\d+)?%?")


def _to_float(text: str) -> float | None:
    """`float(text)`, "45%" -> 0.45, "1,234.5" -> 1234.5; None when not a number."""
    if _THOUSANDS.fullmatch(text):
        text = text.replace(",", "")
    try:
        return float(text.rstrip("%")) / 100.0 if text.endswith("%") else float(text)
    except ValueError:
        return None


def relaxed_accuracy(prediction: str, target: str, tolerance: float = 0.05) -> bool:
    """ChartQA relaxed correctness (pix2struct / lmms-eval): numbers within `tolerance` relative error, else
    case-insensitive exact match.

    As in the reference: the bound is inclusive; "45%" reads as 0.45 (so it does not match a target "45");
    a target of 0 cannot be divided by, so it falls back to exact string match ("0.0" is wrong for "0").
    Unlike the reference, thousands separators are read ("1,000" equals "1000"; the reference compares strings).
    """
    pred_value, target_value = _to_float(prediction), _to_float(target)
    if pred_value is not None and target_value:
        return abs(pred_value - target_value) / abs(target_value) <= tolerance
    return prediction.lower() == target.lower()


# ---------------------------------------------------------------------------------------------------------------
# Multiple choice (AI2D, MMMU, Video-MME, ...)
# ---------------------------------------------------------------------------------------------------------------

# An explicit answer cue ("Answer: C", "The correct answer is (B)", "answer would be **D**"); letter uppercase.
_ANSWER_CUE = re.compile(
    r"(?i:\banswer)(?i:\s+(?:is|would\s+be|should\s+be|will\s+be))?\s*[:\-]?\s*[*_]*\s*[(\[]?([A-Z])(?![A-Za-z0-9])"
)
# A letter opening the response: "B. dog", "C) dog", "(A) dog", "D: ...", "B\nbecause ...".
_LEADING = re.compile(r"[\s*_]*[(\[]?([A-Z])(?:[)\].:,]|\s*-\s|\s*\n)")
_BRACKETED = re.compile(r"[(\[]([A-Z])[)\]]")
_STANDALONE = re.compile(r"(?<![A-Za-z0-9'’])([A-Z])(?![A-Za-z0-9'’])")
_STRIP = " \t\n*_()[]{}.,:;!?\"'`"


def _only(letters: list[str]) -> str | None:
    """The letter if `letters` names exactly one distinct letter, else None (nothing found, or ambiguous)."""
    return letters[0] if len(set(letters)) == 1 else None


def _match_option_text(response: str, options: Sequence[str], letters: str) -> str | None:
    """The letter whose option text the response is, or the one it alone contains (as whole words)."""
    text = " ".join(response.lower().split()).strip(_STRIP)
    norm = [" ".join(o.lower().split()).strip(_STRIP) for o in options]
    exact = [letters[i] for i, o in enumerate(norm) if o and o == text]
    if exact:
        return _only(exact)
    found = [i for i, o in enumerate(norm) if o and re.search(rf"(?<!\w){re.escape(o)}(?!\w)", text)]
    # "hot dog" found also finds "dog": keep only texts that are not part of another found text.
    found = [i for i in found if not any(j != i and norm[i] in norm[j] for j in found)]
    return _only([letters[i] for i in found])


def extract_choice(response: str, choices: Sequence[str] | int) -> str | None:
    """The option letter ("A", "B", ...) a free-form response picks, or None when none can be read.

    `choices` is the list of option texts (letters A, B, ... in order) or just the number of options.
    Tried in order, the first hit wins: the whole response is a letter ("B", "(b)", "**C.**"); the last
    explicit cue ("The answer is B", "Answer: C) dog"); a leading letter ("B. dog", "(A) cat"); exactly one
    bracketed letter; the option text itself (exact, else the only option named); exactly one standalone
    capital letter among the options. Letters outside the options are ignored; ties give None (never a guess).
    """
    if isinstance(choices, str):
        raise TypeError("choices must be a list of option texts or a number of options, not a string")
    n = choices if isinstance(choices, int) else len(choices)
    if not 1 <= n <= 26:
        raise ValueError(f"a multiple-choice question needs 1 to 26 options, got {n}")
    letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"[:n]
    bare = response.strip(_STRIP)
    if len(bare) == 1 and bare.upper() in letters:
        return bare.upper()
    cues = [m for m in _ANSWER_CUE.findall(response) if m in letters]
    if cues:
        return cues[-1]
    leading = _LEADING.match(response)
    if leading and leading.group(1) in letters:
        return leading.group(1)
    if found := _only([m for m in _BRACKETED.findall(response) if m in letters]):
        return found
    if not isinstance(choices, int) and (found := _match_option_text(response, choices, letters)):
        return found
    return _only([m for m in _STANDALONE.findall(response) if m in letters])


def multiple_choice_accuracy(
    responses: Sequence[str], targets: Sequence[str], choices: int | Sequence[int | Sequence[str]]
) -> float:
    """Fraction of responses whose extracted letter equals the target letter; unreadable responses are wrong.

    `choices` is one number of options shared by all questions, or one entry per question (a number of
    options or the list of option texts), as `extract_choice` takes.
    """
    if len(responses) != len(targets):
        raise ValueError(f"{len(responses)} responses but {len(targets)} targets")
    if not responses:
        raise ValueError("multiple_choice_accuracy needs at least one response")
    per_item = [choices] * len(responses) if isinstance(choices, int) else list(choices)
    if len(per_item) != len(responses):
        raise ValueError(f"{len(responses)} responses but {len(per_item)} choice lists")
    hits = [extract_choice(r, c) == t.strip().upper() for r, t, c in zip(responses, targets, per_item)]
    return sum(hits) / len(hits)


# ---------------------------------------------------------------------------------------------------------------
# Temporal localization (ActivityNet-RTL)
# ---------------------------------------------------------------------------------------------------------------


def temporal_iou(pred: tuple[float, float], gt: tuple[float, float]) -> float:
    """Intersection over union of two [start, end] intervals in seconds.

    A reversed interval (start > end) is swapped, as the LITA/RTL reference parser returns
    [min, max] of the two timestamps. Zero-length unions and non-finite bounds score 0.
    """
    if not all(math.isfinite(x) for x in (*pred, *gt)):
        return 0.0
    (ps, pe), (gs, ge) = sorted(pred), sorted(gt)
    inter = max(0.0, min(pe, ge) - max(ps, gs))
    union = (pe - ps) + (ge - gs) - inter
    return inter / union if union > 0 else 0.0


def localization_metrics(
    preds: Sequence[tuple[float, float] | None],
    gts: Sequence[tuple[float, float]],
    thresholds: Sequence[float] = (0.5, 0.7),
) -> dict[str, float]:
    """Mean IoU and precision@t (fraction with IoU >= t) over paired predictions and ground truths.

    Keys: "mean_iou" and "precision@0.5", "precision@0.7", ... (threshold formatted with `:g`). A `None`
    prediction (no timestamps could be parsed) scores IoU 0.
    """
    if len(preds) != len(gts):
        raise ValueError(f"{len(preds)} predictions but {len(gts)} ground truths")
    if not gts:
        raise ValueError("localization_metrics needs at least one pair")
    ious = [0.0 if p is None else temporal_iou(p, g) for p, g in zip(preds, gts)]
    metrics = {"mean_iou": sum(ious) / len(ious)}
    for t in thresholds:
        metrics[f"precision@{t:g}"] = sum(iou >= t for iou in ious) / len(ious)
    return metrics
