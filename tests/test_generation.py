"""Next-token selection with per-sequence settings: each row gets what it would get alone."""

from __future__ import annotations

import torch

from nvila.generation import GenerationOptions, select_next_token, select_next_tokens


def test_per_row_settings_and_generators_match_rows_selected_alone():
    logits = torch.randn(5, 50, generator=torch.Generator().manual_seed(0))
    logits[4] = logits[1]
    options = [
        GenerationOptions(),
        GenerationOptions(temperature=1.2, top_p=0.8, seed=1),
        GenerationOptions(),
        GenerationOptions(temperature=0.7, top_k=5, seed=2),
        GenerationOptions(temperature=1.2, top_p=0.8, seed=1),
    ]

    def generators():
        return [None if o.seed is None else torch.Generator().manual_seed(o.seed) for o in options]

    together = select_next_tokens(logits, options, generators())
    alone = [int(select_next_token(logits[k : k + 1], o, g)) for k, (o, g) in enumerate(zip(options, generators()))]
    assert together.tolist() == alone
    assert together[0] == logits[0].argmax() and together[2] == logits[2].argmax()
    assert together[1] == together[4]  # same logits, settings and seed: each row draws from its own generator
