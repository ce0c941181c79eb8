"""The model layer, laid out as `transformers/models/<name>/`: one package per model family (NVILA here)."""
