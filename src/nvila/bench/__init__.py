"""`nvila bench`: NVILA's visual pipeline measured side by side with peer VLMs from transformers.

`peers` builds every contender (random weights, one shared Qwen2 text config) and its inputs, `runner`
measures them, `report` writes the markdown and plots, `cli` is the `nvila bench` sub-command. This file only
holds the names the command line validates against, so building the `nvila` parser imports no torch.
"""

#: Every contender, in report order (`peers.available_models()` drops those this transformers lacks).
MODEL_NAMES = ("nvila", "nvila-lite", "nvila-lite-w8a8", "qwen2-vl", "llava-onevision", "internvl")
#: Variants of a contender, run only when `--models` names them: NVILA-Lite with `nvila quantize`'s W8A8 tower.
VARIANTS = ("nvila-lite-w8a8",)
#: Benchmark sizes: "tiny" (tests), "small" (CPU, minutes: narrow widths, real geometry), "2b" (CPU, ~30 min: the
#: real towers and a Qwen2.5-1.5B-sized LLM, images only), "full" (real towers and an 8B-class LLM, GPU).
SIZES = ("tiny", "small", "2b", "full")
#: Sizes whose models are built one at a time and measured without a warm-up run (minutes per case on a CPU).
REAL_WIDTH_SIZES = ("2b", "full")
#: Which cases to run.
CASE_SETS = ("images", "videos", "all")
