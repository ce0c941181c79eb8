"""DeltaLoss scores and tower features of training records, batched, with a resumable score file.

DeltaLoss (NVILA, arXiv 2412.04468, dataset pruning): an example's score is the log-likelihood ratio of its
answers under a large and a small model,

    score(x) = log p_large(answers | prompt, media) - log p_small(answers | prompt, media)
             = sum over answer tokens t of (log p_large(t | ...) - log p_small(t | ...))
             = loss_small(x) - loss_large(x)      (summed token cross-entropies)

where the answer tokens are the labelled positions of training (assistant answers and their end token). High
scores (the large model finds the answer likely, the small one does not) are kept; scores near 0 (both find
it easy, or both hard) and negative ones (the small model is right where the large one is not) are pruned.

Owns: per-example answer log-probabilities (only the labelled positions go through the LM head, so memory
does not grow with vocabulary x sequence), the pairwise scoring loop with a tqdm bar, the score file (JSONL,
appended batch by batch; a rerun skips ids already there) and mean-pooled tower features for the cluster
baseline. Shapes: b rows, l tokens, h LLM width, v vocabulary, n tiles, c tower width.
"""

from __future__ import annotations

import json
import logging
import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from nvila.data.collate import collate_padded
from nvila.data.dataset import ConversationDataset
from nvila.data.records import Record
from nvila.errors import ConfigError
from nvila.models.nvila.image_processing_nvila import normalize_tiles
from nvila.models.nvila.modeling_nvila import NVILAForConditionalGeneration
from nvila.models.nvila.processing_nvila import EncodedSample, NVILAProcessor
from nvila.prompt import IGNORE_INDEX

log = logging.getLogger(__name__)

SCORE_FORMAT = "nvila-deltaloss/1"


def check_same_tokenizer(large: NVILAProcessor, small: NVILAProcessor) -> None:
    """Refuse two models whose tokenizers differ: DeltaLoss compares the same answer tokens under both."""
    a, b = large.tokenizer.get_vocab(), small.tokenizer.get_vocab()
    if a == b:
        return
    differing = sum(1 for token in a.keys() | b.keys() if a.get(token) != b.get(token))
    raise ConfigError(
        f"the large and small models use different tokenizers ({len(a)} vs {len(b)} tokens, {differing} differ); "
        "DeltaLoss compares log-probabilities of the same answer tokens, so both models need one tokenizer"
    )


@torch.no_grad()
def answer_logprobs(
    model: NVILAForConditionalGeneration, samples: Sequence[EncodedSample], pad_id: int
) -> torch.Tensor:
    """Sum of log p(token) over each sample's labelled tokens (right-padded batch): [b] float32 on the CPU."""
    batch = collate_padded(samples, pad_id, model.nvila_config)
    kwargs = batch.model_kwargs(model.device)
    labels = kwargs.pop("labels")
    embeds = model.embed(
        kwargs["input_ids"], kwargs["pixel_values"], kwargs["image_block_sizes"],
        kwargs["video_pixel_values"], kwargs["video_frame_counts"],
    )  # fmt: skip
    hidden = model.llm.model(
        inputs_embeds=embeds, attention_mask=kwargs["attention_mask"], position_ids=kwargs["position_ids"]
    ).last_hidden_state  # [b, l, h]
    target = labels[:, 1:]  # token t+1 is predicted at position t
    rows, cols = (target != IGNORE_INDEX).nonzero(as_tuple=True)
    logp = model.llm.lm_head(hidden[rows, cols]).float().log_softmax(-1)  # [labelled tokens, v]
    picked = logp.gather(-1, target[rows, cols].unsqueeze(-1)).squeeze(-1)
    return torch.zeros(len(samples)).index_add_(0, rows.cpu(), picked.cpu())


def label_count(sample: EncodedSample) -> int:
    """Tokens scored: labelled positions after the first (the first token of a row is never predicted)."""
    return sum(1 for label in sample.labels[1:] if label != IGNORE_INDEX)


class ScoreFile:
    """JSONL: a header line naming the models, then one line per record id (appended, fsync'd per batch).

    A line that a kill cut short is dropped on the next read; a file made with other models is refused.
    """

    def __init__(self, path: str | Path, models: dict[str, str]) -> None:
        self.path = Path(path)
        self.header = {"format": SCORE_FORMAT, **models}

    def read(self) -> dict[str, dict[str, Any]]:
        """Rows already scored, by id (empty when the file does not exist yet)."""
        if not self.path.is_file():
            return {}
        text = self.path.read_text()
        if text and not text.endswith("\n"):  # interrupted mid-line: keep the complete lines only
            text = text[: text.rfind("\n") + 1]
            self.path.write_text(text)
        lines = text.splitlines()
        try:
            header = json.loads(lines[0]) if lines else {}
            rows = [json.loads(line) for line in lines[1:]]
        except json.JSONDecodeError as e:
            raise ConfigError(f"{self.path}: malformed score file ({e}); delete it to score again") from None
        if header != self.header:
            raise ConfigError(
                f"{self.path} holds scores of other models ({header}); delete it or pass another --scores file"
            )
        return {row["id"]: row for row in rows}

    def append(self, rows: Sequence[dict[str, Any]]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        new = not self.path.is_file() or self.path.stat().st_size == 0
        with self.path.open("a") as f:
            if new:
                f.write(json.dumps(self.header) + "\n")
            f.writelines(json.dumps(row) + "\n" for row in rows)
            f.flush()
            os.fsync(f.fileno())


def _encode(dataset: ConversationDataset, index: int) -> tuple[EncodedSample | None, str]:
    """The sample, or None and why (the reason the dataset counted)."""
    before = Counter(dataset.stats.counts)
    sample = dataset[index]
    reasons = [reason for reason, n in dataset.stats.counts.items() if n > before.get(reason, 0)]
    return sample, (reasons[0] if reasons else "")


def score_deltaloss(
    records: Sequence[Record],
    large: tuple[NVILAForConditionalGeneration, NVILAProcessor],
    small: tuple[NVILAForConditionalGeneration, NVILAProcessor],
    score_file: ScoreFile,
    *,
    batch_size: int = 8,
    max_length: int = 4096,
) -> dict[str, dict[str, Any]]:
    """Score every record (skipping ids already in `score_file`); returns id -> row for all records.

    A row: {"id", "source", "score", "logp_large", "logp_small", "tokens"}; records that cannot be scored (missing
    media, longer than `max_length`, answers tokenized differently) get "score": None and a "skipped" reason.
    Each model sees the record through its own processor (towers and tile sizes may differ).
    """
    check_same_tokenizer(large[1], small[1])
    done = score_file.read()
    todo = [r for r in records if r.id not in done]
    sets = [ConversationDataset(todo, proc, max_length, overlong="skip") for _, proc in (large, small)]
    bar = tqdm(total=len(records), initial=len(records) - len(todo), desc="DeltaLoss", unit="sample")
    for start in range(0, len(todo), batch_size):
        rows, pairs = [], []
        for i in range(start, min(start + batch_size, len(todo))):
            record = todo[i]
            (a, why_a), (b, why_b) = _encode(sets[0], i), _encode(sets[1], i)
            skipped = (why_a or why_b or "unusable") if a is None or b is None else None
            if skipped is None and label_count(a) != label_count(b):
                skipped = "answer tokens differ between the two models' encodings"
            if skipped is None and label_count(a) == 0:
                skipped = "no answer tokens"
            if skipped is not None:
                rows.append({"id": record.id, "source": record.source, "score": None, "skipped": skipped})
            else:
                pairs.append((record, a, b))
        if pairs:
            logp_large = answer_logprobs(large[0], [a for _, a, _ in pairs], large[1].pad_token_id)
            logp_small = answer_logprobs(small[0], [b for _, _, b in pairs], small[1].pad_token_id)
            for (record, a, _), lp_l, lp_s in zip(pairs, logp_large.tolist(), logp_small.tolist()):
                rows.append({"id": record.id, "source": record.source, "score": lp_l - lp_s,
                             "logp_large": lp_l, "logp_small": lp_s, "tokens": label_count(a)})  # fmt: skip
        score_file.append(rows)
        done.update({row["id"]: row for row in rows})
        bar.update(min(batch_size, len(todo) - start))
    bar.close()
    return done


@torch.no_grad()
def mean_tower_features(
    model: NVILAForConditionalGeneration,
    processor: NVILAProcessor,
    records: Sequence[Record],
    *,
    batch_size: int = 8,
) -> tuple[torch.Tensor, list[bool]]:
    """Each record's tower output (the projector's input layer) averaged over patches and tiles: ([r, c], usable).

    Records without media or with unusable media get a zero vector and usable=False.
    """
    dataset = ConversationDataset(records, processor, max_length=1 << 30)
    features = torch.zeros(len(records), model.nvila_config.vision.hidden_size)
    usable = [False] * len(records)
    for start in tqdm(range(0, len(records), batch_size), desc="tower features", unit="batch"):
        tiles, owners = [], []
        for i in range(start, min(start + batch_size, len(records))):
            sample = dataset[i]
            if sample is None or not sample.tiles + sample.video_tiles:
                continue
            tiles += sample.tiles + sample.video_tiles
            owners += [i] * len(sample.tiles + sample.video_tiles)
        if not tiles:
            continue
        pixels = normalize_tiles(tiles, model.nvila_config).to(model.device)  # [n, 3, s, s]
        pooled = model.vision_tower(pixels).float().mean(dim=1).cpu()  # [n, c]
        index = torch.tensor(owners)
        sums = torch.zeros_like(features).index_add_(0, index, pooled)
        counts = torch.zeros(len(records)).index_add_(0, index, torch.ones(len(owners)))
        hit = counts > 0
        features[hit] = sums[hit] / counts[hit, None]
        for i in set(owners):
            usable[i] = True
    return features, usable
