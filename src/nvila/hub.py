"""Where a model comes from: a local folder, or a Hugging Face hub id (`org/name`) that `huggingface_hub`
downloads or finds in its cache (`HF_HOME`, `HF_HUB_CACHE`, `HF_HUB_OFFLINE` and `HF_TOKEN` apply as in every
transformers program). Owns the resolution and its one-line errors; what the folder holds is the loader's.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from huggingface_hub import snapshot_download
from huggingface_hub.errors import (
    GatedRepoError,
    HfHubHTTPError,
    LocalEntryNotFoundError,
    OfflineModeIsEnabled,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from nvila.errors import CheckpointError

#: `org/name` as the hub spells model ids (letters, digits, `-`, `_`, `.`).
HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*")
#: Never downloaded: weights nvila refuses to read (pickle) and formats it does not use.
IGNORED_FILES = ["*.bin", "*.pt", "*.pth", "*.ckpt", "*.pkl", "*.msgpack", "*.h5", "*.onnx", "*.gguf"]


def is_hub_id(model: str | os.PathLike) -> bool:
    """True for `org/name` that is not an existing path (a local folder always wins)."""
    text = os.fspath(model)
    return HUB_ID.fullmatch(text) is not None and not Path(text).exists()


def resolve_model(
    model: str | os.PathLike,
    *,
    revision: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    local_files_only: bool = False,
    token: str | bool | None = None,
) -> Path:
    """The local folder of `model`: a folder as it is, or a hub id's snapshot (downloaded when not cached).

    `revision` (a branch, tag or commit), `cache_dir`, `local_files_only` and `token` are `huggingface_hub`'s and
    apply to hub ids only. Raises `CheckpointError` with one line saying what to do.
    """
    text = os.fspath(model)
    if Path(text).is_dir():
        if revision is not None:
            raise CheckpointError(f"revision={revision!r} applies to hub ids, but {text} is a local folder")
        return Path(text)
    if not is_hub_id(text):
        raise CheckpointError(f"checkpoint folder not found: {text} (a model is a local folder or a hub id org/name)")
    at = f" at revision {revision!r}" if revision else ""
    try:
        folder = snapshot_download(
            text,
            revision=revision,
            cache_dir=cache_dir,
            local_files_only=local_files_only,
            token=token,
            ignore_patterns=IGNORED_FILES,
        )
    except (LocalEntryNotFoundError, OfflineModeIsEnabled):
        raise CheckpointError(
            f"{text}{at} is neither a local folder nor in the Hugging Face cache, and downloads are off "
            f"(HF_HUB_OFFLINE=1 or local_files_only): download it once with network access (`hf download {text}`)"
        ) from None
    except GatedRepoError:
        raise CheckpointError(
            f"{text} is gated: accept its terms on huggingface.co and log in (`hf auth login`, or HF_TOKEN)"
        ) from None
    except RepositoryNotFoundError:
        raise CheckpointError(
            f"{text} is neither a local folder nor a model on the Hugging Face hub (a private one needs "
            "`hf auth login` or HF_TOKEN)"
        ) from None
    except RevisionNotFoundError:
        raise CheckpointError(f"{text} has no revision {revision!r}") from None
    except (HfHubHTTPError, OSError) as e:
        raise CheckpointError(f"{text}{at}: download failed ({str(e).splitlines()[0]})") from None
    return Path(folder)
