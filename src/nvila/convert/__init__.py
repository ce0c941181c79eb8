"""`nvila convert`: the official NVILA layout <-> the single-folder Hugging Face layout that SGLang serves.

Modules: `names` (tensor names), `configs` (config.json both ways, SGLang's fixed geometry), `tokenizer_files`
(tokenizer files and the media-aware chat template), `shards` (reading headers, writing safetensors shards),
`to_hf` / `to_official` (the two conversions), `cli` (the sub-command). See docs/checkpoints.md.
"""
