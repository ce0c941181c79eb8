"""Quality drift of a quantized model: next-token KL divergence and perplexity on held-out samples.

At every position whose next token is text (not a media token), the float model's distribution p and the
quantized model's q are compared: KL(p || q) = sum_v p_v (log p_v - log q_v), averaged over positions, and
top-1 agreement (both pick the same most likely token). Perplexity = exp(mean -log prob of the actual next
token) under each model, over the answer tokens only (the labelled positions: a chat model is trained to
predict answers, not prompts, so prompt perplexity says little). KL is also given over the answer tokens.
Shapes: l sequence, n scored positions, v vocabulary.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from nvila.models.nvila.modeling_nvila import NVILAForConditionalGeneration
from nvila.prompt import IGNORE_INDEX


@dataclass
class TokenLogProbs:
    """One sample's next-token log-probabilities at its text positions."""

    logprobs: torch.Tensor  #: [n, v] float32 on the CPU
    targets: torch.Tensor  #: [n] the actual next tokens
    answer: torch.Tensor  #: [n] bool, the next token is part of an answer


@torch.no_grad()
def next_token_logprobs(model: NVILAForConditionalGeneration, batches: Sequence[dict[str, Any]]) -> list[TokenLogProbs]:
    """Per one-row batch (model inputs with "labels"): log-probs at the positions followed by a text token."""
    media = torch.tensor([model.nvila_config.image_token_id, model.nvila_config.video_token_id])
    out = []
    for batch in batches:
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        logits = model(**inputs).logits[0, :-1]  # [l-1, v]: position t predicts token t+1
        targets = batch["input_ids"][0, 1:].cpu()
        keep = ~torch.isin(targets, media)
        answer = batch["labels"][0, 1:].cpu() != IGNORE_INDEX
        logprobs = logits[keep.to(logits.device)].float().log_softmax(-1).cpu()
        out.append(TokenLogProbs(logprobs, targets[keep], answer[keep]))
    return out


def drift(reference: Sequence[TokenLogProbs], quantized: Sequence[TokenLogProbs]) -> dict[str, float]:
    """KL(reference || quantized) and top-1 agreement over all text positions; KL and perplexities on answers."""
    p = torch.cat([r.logprobs for r in reference])  # [n, v]
    q = torch.cat([r.logprobs for r in quantized])
    targets = torch.cat([r.targets for r in reference])
    answer = torch.cat([r.answer for r in reference])
    if not answer.any():
        raise ValueError("the held-out samples have no answer tokens to score")
    kl = (p.exp() * (p - q)).sum(-1)  # [n]
    nll = lambda lp: float(-lp[answer].gather(-1, targets[answer, None]).mean())  # noqa: E731
    return {
        "kl_mean": float(kl.mean()),
        "top1_agreement": float((p.argmax(-1) == q.argmax(-1)).float().mean()),
        "positions": int(targets.numel()),
        "answer_kl_mean": float(kl[answer].mean()),
        "perplexity_before": math.exp(nll(p)),
        "perplexity_after": math.exp(nll(q)),
        "answer_tokens": int(answer.sum()),
    }
