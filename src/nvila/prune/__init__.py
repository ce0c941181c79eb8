"""Dataset pruning: DeltaLoss scores (large vs small model) and per-sub-dataset selection, with baselines.

`scoring` (answer log-probs, the resumable score file, tower features), `select` (top fraction per
sub-dataset, random, k-means clusters), `job` (files in, files out), `cli` (`nvila prune`). Names are imported
lazily, so building the `nvila` parser (`cli.add_prune_args`) does not import torch.
"""

from __future__ import annotations

from nvila.lazy import lazy_exports

_EXPORTS = {
    "PruneResult": "nvila.prune.job",
    "PruneSettings": "nvila.prune.job",
    "prune": "nvila.prune.job",
    "ScoreFile": "nvila.prune.scoring",
    "answer_logprobs": "nvila.prune.scoring",
    "check_same_tokenizer": "nvila.prune.scoring",
    "score_deltaloss": "nvila.prune.scoring",
    "keep_count": "nvila.prune.select",
    "random_per_group": "nvila.prune.select",
    "top_per_group": "nvila.prune.select",
    "add_prune_args": "nvila.prune.cli",
    "run_prune": "nvila.prune.cli",
}

__all__ = sorted(_EXPORTS)

__getattr__ = lazy_exports(__name__, _EXPORTS)
