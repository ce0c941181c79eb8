"""The inference engine behind `nvila serve`: continuous batching over a preallocated KV cache.

Modules: `config` (EngineConfig), `events` (what a request hears), `kv_cache` (SlotKVCache, a transformers
Cache of fixed slots), `feature_cache` (LRU of visual embeddings by media hash), `media` (a prompt's media
as cacheable items), `runner` (prefill / decode on the model), `request` (one request's state and
cancellation), `core` (InferenceEngine, the scheduler thread). See docs/serving.md, "Engine".
Importing this package (or `config`, `events`) does not import torch; use `nvila.engine.core.InferenceEngine`.
"""
