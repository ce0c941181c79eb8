"""Evaluation: benchmark metrics (VQA accuracy, ANLS, relaxed accuracy, multiple choice, temporal IoU)."""

from nvila.eval.metrics import (
    anls,
    extract_choice,
    localization_metrics,
    multiple_choice_accuracy,
    normalize_vqa_answer,
    relaxed_accuracy,
    temporal_iou,
    vqa_accuracy,
)

__all__ = [
    "anls",
    "extract_choice",
    "localization_metrics",
    "multiple_choice_accuracy",
    "normalize_vqa_answer",
    "relaxed_accuracy",
    "temporal_iou",
    "vqa_accuracy",
]
