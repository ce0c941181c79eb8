"""Tokenizers: loading a checkpoint's tokenizer and training a small byte-level BPE one.

Owns: the official special tokens and chat template, `load_tokenizer` (from a folder, offline) and
`train_tokenizer` (the `tokenizers` library; used by tests and by the project's own small models).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from transformers import AutoTokenizer, PreTrainedTokenizerBase, PreTrainedTokenizerFast
from transformers.models.auto.tokenization_auto import tokenizer_class_from_name

from nvila.errors import CheckpointError
from nvila.json_io import read_json
from nvila.prompt import IMAGE_TOKEN, VIDEO_TOKEN

#: Added tokens of the official NVILA tokenizers, in their id order at the end of the vocabulary.
SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "[BOS]",
    "[PAD]",
    "<vila/sentinel>",
    IMAGE_TOKEN,
    VIDEO_TOKEN,
)
#: Qwen2's pre-tokenisation split (contractions, letters, single digits, punctuation runs, newlines, spaces).
QWEN2_SPLIT_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
SYSTEM_PROMPT = "You are a helpful assistant"
#: The official Qwen2 chat template (NVILA's `llm/tokenizer_config.json`).
CHAT_TEMPLATE = (
    "{% if messages[0]['role'] != 'system' %}{{ '<|im_start|>system\\nYou are a helpful assistant<|im_end|>\\n' }}"
    "{% endif %}{% for message in messages if message['content'] is not none %}{{ '<|im_start|>' + message['role'] "
    "+ '\\n' + message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


TURN_START = "<|im_start|>"  #: opens every turn of the official chat format
TURN_END = "<|im_end|>"  #: closes every turn (an assistant answer's last token)


def render_chat(
    messages: list[dict[str, str]], add_generation_prompt: bool = True
) -> tuple[str, list[tuple[int, int]]]:
    """Render messages ({"role", "content"}) with the official template, without a template engine.

    Returns the text and the character spans of every assistant answer, each including its `<|im_end|>`
    (the tokens a model is trained to produce).
    """
    text = ""
    spans = []
    if not messages or messages[0]["role"] != "system":
        text += f"{TURN_START}system\n{SYSTEM_PROMPT}{TURN_END}\n"
    for m in messages:
        if m["content"] is None:
            continue
        text += f"{TURN_START}{m['role']}\n"
        start = len(text)
        text += f"{m['content']}{TURN_END}"
        if m["role"] == "assistant":
            spans.append((start, len(text)))
        text += "\n"
    if add_generation_prompt:
        text += f"{TURN_START}assistant\n"
    return text, spans


def format_chat(messages: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
    """The official chat text of `messages` (see `render_chat`)."""
    return render_chat(messages, add_generation_prompt)[0]


def load_tokenizer(folder: str | Path) -> PreTrainedTokenizerBase:
    """The tokenizer saved in `folder` (a checkpoint's `llm/`), loaded offline.

    Raises `CheckpointError` when it lacks the `<image>` / `<vila/video>` tokens.
    """
    folder = Path(folder)
    if not (folder / "tokenizer.json").is_file() and not (folder / "vocab.json").is_file():
        raise CheckpointError(f"no tokenizer in {folder} (expected tokenizer.json or vocab.json + merges.txt)")
    try:
        tokenizer = _tokenizer_class(folder).from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError) as e:
        raise CheckpointError(f"cannot load the tokenizer in {folder}: {e}") from None
    missing = [t for t in (IMAGE_TOKEN, VIDEO_TOKEN) if t not in tokenizer.get_vocab()]
    if missing:
        raise CheckpointError(f"the tokenizer in {folder} lacks the media tokens {missing}")
    return tokenizer


def _tokenizer_class(folder: Path) -> type:
    """The class `tokenizer_config.json` names, else `AutoTokenizer`. Taken by name so that a single-folder HF
    checkpoint's `config.json`, whose `auto_map` names remote code, is never consulted (AutoTokenizer would ask
    whether to run that code)."""
    config_path = folder / "tokenizer_config.json"
    name = read_json(config_path, CheckpointError, want=dict).get("tokenizer_class") if config_path.is_file() else None
    return (tokenizer_class_from_name(name) if isinstance(name, str) else None) or AutoTokenizer


def save_tokenizer(tokenizer: PreTrainedTokenizerBase, folder: str | Path) -> None:
    """Save so that both this transformers (5.x) and the official code's (4.x) can load the folder.

    transformers 5 writes `tokenizer_class: TokenizersBackend` and `extra_special_tokens`, which 4.x does not
    know; the config is rewritten with the 4.x names (`Qwen2Tokenizer` reads `tokenizer.json` there) and the
    chat template is also stored inside it, where 4.x looks for it.
    """
    folder = Path(folder)
    tokenizer.save_pretrained(str(folder))
    config_path = folder / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    if config.get("tokenizer_class") in (None, "TokenizersBackend", "PreTrainedTokenizerFast"):
        config["tokenizer_class"] = "Qwen2Tokenizer"
    extra = config.pop("extra_special_tokens", None)
    if isinstance(extra, list):
        config["additional_special_tokens"] = extra
    config.pop("backend", None)
    config.setdefault("chat_template", tokenizer.chat_template or CHAT_TEMPLATE)
    config_path.write_text(json.dumps(config, indent=2))
    special = {
        k: config[k] for k in ("bos_token", "eos_token", "pad_token", "additional_special_tokens") if k in config
    }
    (folder / "special_tokens_map.json").write_text(json.dumps(special, indent=2))


def train_tokenizer(corpus: Iterable[str], vocab_size: int = 512) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE tokenizer with the official special tokens as its last ids.

    `vocab_size` counts everything (256 bytes + merges + the 8 special tokens).
    """
    n_regular = vocab_size - len(SPECIAL_TOKENS)
    if n_regular < 256:
        raise ValueError(f"vocab_size must be >= {256 + len(SPECIAL_TOKENS)} for a byte-level BPE")
    core = Tokenizer(models.BPE())
    # Qwen2's own normaliser and pre-tokeniser, so the Qwen2 tokenizer class reloads it unchanged
    core.normalizer = normalizers.NFC()
    core.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN2_SPLIT_PATTERN), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=n_regular, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    core.train_from_iterator(corpus, trainer=trainer)
    # a small corpus can run out of merges: fill the vocabulary with unused (special, never decoded) tokens
    core.add_special_tokens([f"<unused{i}>" for i in range(core.get_vocab_size(), n_regular)])
    core.add_special_tokens(list(SPECIAL_TOKENS))  # ids vocab_size-8 ... vocab_size-1, in this order
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core,
        bos_token="[BOS]",
        eos_token="<|im_end|>",
        pad_token="[PAD]",
        additional_special_tokens=list(SPECIAL_TOKENS),
        model_max_length=32768,
        clean_up_tokenization_spaces=False,
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer
