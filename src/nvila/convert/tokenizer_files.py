"""Tokenizer files between `llm/` (official) and the top of the HF folder, and the media-aware chat template.

Every file of `llm/` other than its config and weights (tokenizer, chat template, generation config) moves to
the top of the HF folder unchanged, except two that SGLang needs changed:
- `tokenizer_config.json` gains `extra_special_tokens: {image_token, video_token}`, so the tokenizer has
  `.image_token` / `.video_token` (SGLang's NVILA processor reads them), and the chat template below;
- `chat_template.jinja` becomes `MEDIA_CHAT_TEMPLATE`: the official ChatML that also renders OpenAI content
  parts, `<image>` / `<vila/video>` for media parts (SGLang's chat endpoint sends parts to templates that loop
  over `message['content']`). For text-only messages it renders exactly what the official template renders.
The originals of those two are kept in the conversion record, so the way back restores them byte for byte.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from nvila.errors import CheckpointError
from nvila.models.nvila.tokenization_nvila import SYSTEM_PROMPT
from nvila.prompt import IMAGE_TOKEN, VIDEO_TOKEN

MEDIA_CHAT_TEMPLATE = (
    "{% if messages[0]['role'] != 'system' %}{{ '<|im_start|>system\\n" + SYSTEM_PROMPT + "<|im_end|>\\n' }}"
    "{% endif %}{% for message in messages if message['content'] is not none %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] in ('image', 'image_url') %}{{ '" + IMAGE_TOKEN + "' }}"
    "{% elif part['type'] in ('video', 'video_url') %}{{ '" + VIDEO_TOKEN + "' }}"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}{{ '<|im_end|>\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
#: Files of `llm/` that are not tokenizer files.
LLM_MODEL_FILES = ("config.json", "model.safetensors.index.json")
#: Files rewritten in the HF folder (their originals are recorded).
REWRITTEN = ("tokenizer_config.json", "chat_template.jinja")
#: Files taken as the tokenizer's from an HF folder without a conversion record.
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.json",
    "merges.txt",
    "added_tokens.json",
    "special_tokens_map.json",
    "chat_template.jinja",
    "generation_config.json",
)


def llm_files(llm_dir: Path) -> list[str]:
    """Names of the files of `llm/` besides its config and weights."""
    files = [p for p in llm_dir.iterdir() if p.is_file() and p.suffix != ".safetensors"]
    return sorted(p.name for p in files if p.name not in LLM_MODEL_FILES)


def write_hf_tokenizer(llm_dir: Path, out: Path, taken: set[str]) -> dict[str, Any]:
    """Copy `llm/`'s tokenizer files to `out` (see the module docstring); returns their record.

    `taken`: names the HF folder uses for its own files; a tokenizer file of such a name is an error.
    """
    names = llm_files(llm_dir)
    clash = sorted(set(names) & taken)
    if clash:
        raise CheckpointError(f"{llm_dir} holds files whose names the HF layout uses for its own: {', '.join(clash)}")
    originals = {name: (llm_dir / name).read_bytes().decode() for name in names if name in REWRITTEN}
    for name in names:
        if name not in REWRITTEN:
            shutil.copy2(llm_dir / name, out / name)
    config = json.loads(originals.get("tokenizer_config.json", "{}"))
    extra = config.pop("extra_special_tokens", None)
    if isinstance(extra, list):  # transformers 5's name for additional_special_tokens
        config.setdefault("additional_special_tokens", extra)
    named = extra if isinstance(extra, dict) else {}
    config["extra_special_tokens"] = {**named, "image_token": IMAGE_TOKEN, "video_token": VIDEO_TOKEN}
    config["chat_template"] = MEDIA_CHAT_TEMPLATE
    (out / "tokenizer_config.json").write_text(json.dumps(config, indent=2))
    (out / "chat_template.jinja").write_text(MEDIA_CHAT_TEMPLATE)
    return {"llm_files": names, "originals": originals}


def write_official_tokenizer(src: Path, llm_dir: Path, record: dict[str, Any] | None) -> None:
    """Copy the HF folder's tokenizer files into `llm/`, restoring the recorded originals."""
    if record is None:
        names, originals = [n for n in TOKENIZER_FILES if (src / n).is_file()], {}
    else:
        names, originals = record["llm_files"], record["originals"]
    for name in names:
        if name in originals:
            (llm_dir / name).write_bytes(originals[name].encode())
        elif (src / name).is_file():
            shutil.copy2(src / name, llm_dir / name)
        else:
            raise CheckpointError(f"missing file: {src / name} (listed in the conversion record)")
