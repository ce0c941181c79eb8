"""`nvila bench`: NVILA's visual pipeline measured side by side with peer VLMs from transformers.

`peers` builds every contender (random weights, one shared Qwen2 text config) and its inputs, `runner`
measures them, `report` writes the markdown and plots, `cli` is the `nvila bench` sub-command. This file only
holds the names the command line validates against, so building the `nvila` parser imports no torch.
"""

#: Every contender, in report order (`peers.available_models()` drops those this transformers lacks).
MODEL_NAMES = ("nvila", "nvila-lite", "qwen2-vl", "llava-onevision", "internvl")
#: Benchmark sizes: "tiny" (tests), "small" (CPU, minutes), "full" (real 2B/8B-class widths, GPU).
SIZES = ("tiny", "small", "full")
#: Which cases to run.
CASE_SETS = ("images", "videos", "all")
