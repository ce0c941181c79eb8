"""NVILA: each file says its layer, as in `transformers/models/<name>/`.

- `configuration_nvila`: `NVILAConfig` (vision / text / projector / media settings) and the named presets
- `geometry`: the pure token arithmetic, the one tile plan (scale order, grids, tiles and tokens per item)
- `vision_tower`, `dynamic_s2`, `projector`: the SigLIP tower, the multi-scale merge, the 2x2 / 3x3 projectors
- `modeling_nvila`: `NVILAForConditionalGeneration` (features, one `masked_scatter`, loss, decoding loop)
- `image_processing_nvila`: Dynamic-S2 / dynamic tiling and normalisation of images (and video frames)
- `tokenization_nvila`: checkpoint tokenizers (load, save, the chat format, small BPE training)
- `processing_nvila`: `NVILAProcessor`, text + media -> ids and tensors with every placeholder expanded
"""
