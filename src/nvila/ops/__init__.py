"""Low-level layers the model and the jobs share: quantized linears (`quantized`: AWQ W4A16, W8A8 int8, their
checkpoint config entries and the swap-in before loading) and their arithmetic (`int4`, `int8`). Imports torch
and nothing of nvila above `config` / `errors`."""
