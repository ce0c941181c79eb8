"""`nvila.load` and every `--model`: a folder in either layout, or a hub id resolved by the real `huggingface_hub`
code against a hub cache laid out here (no network: `local_files_only`, or `HF_HUB_OFFLINE=1` in a subprocess)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import nvila
from nvila.checkpoint import save
from nvila.convert.to_hf import to_hf
from nvila.errors import CheckpointError
from nvila.hub import is_hub_id
from tests.conftest import noise_image

MAIN = "1" * 40  #: the commit refs/main points to: the tiny model in the official layout
V2 = "2" * 40  #: the commit of branch v2: the tiny-lite model in the HF layout
REPO = "nvila-test/tiny"


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.fixture(scope="module")
def official(tmp_path_factory, tiny, tiny_lite) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("official")
    return {name: save(m, p.tokenizer, root / name) for name, (m, p) in (("tiny", tiny), ("tiny-lite", tiny_lite))}


@pytest.fixture(scope="module")
def hf_home(tmp_path_factory, official) -> Path:
    """HF_HOME with `hub/models--nvila-test--tiny/` as huggingface_hub lays it out: refs/main and refs/v2 hold
    commit hashes, snapshots/<hash>/ the files of that commit."""
    home = tmp_path_factory.mktemp("hf-home")
    repo = home / "hub" / f"models--{REPO.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    shutil.copytree(official["tiny"], repo / "snapshots" / MAIN)
    to_hf(official["tiny-lite"], repo / "snapshots" / V2)
    (repo / "refs" / "main").write_text(MAIN)
    (repo / "refs" / "v2").write_text(V2)
    return home


def load_cached(hf_home: Path, model: str, **kwargs):
    return nvila.load(model, cache_dir=hf_home / "hub", local_files_only=True, **kwargs)


def test_a_hub_id_loads_from_the_cache(hf_home, official):
    model, processor = load_cached(hf_home, REPO)
    reference, _ = nvila.load(official["tiny"])
    assert same_weights(model, reference)
    assert model.config.name == "tiny"  # the repository's name, not the snapshot's hash
    assert processor.config.image_token_id == reference.config.image_token_id


@pytest.mark.parametrize(("revision", "preset"), [("v2", "tiny-lite"), (V2, "tiny-lite"), (MAIN, "tiny")])
def test_a_revision_selects_its_snapshot_in_either_layout(hf_home, official, revision, preset):
    model, _ = load_cached(hf_home, REPO, revision=revision)
    reference, _ = nvila.load(official[preset])
    assert model.config.projector_type == reference.config.projector_type and same_weights(model, reference)


@pytest.mark.parametrize(
    ("model", "kwargs", "message"),
    [
        ("nvila-test/missing", {}, r"nvila-test/missing is neither a local folder nor in the .*\(`hf download nvila-t"),
        (REPO, {"revision": "v3"}, r"at revision 'v3' is neither a local folder nor in the Hugging"),
        ("no-such-folder", {}, r"checkpoint folder not found: no-such-folder \(a model is a local folder or a hub id"),
    ],
)
def test_what_cannot_be_found_is_one_line_saying_what_to_do(hf_home, model, kwargs, message):
    with pytest.raises(CheckpointError, match=message) as caught:
        load_cached(hf_home, model, **kwargs)
    assert "\n" not in str(caught.value)


def test_a_local_folder_wins_over_a_hub_id_and_refuses_a_revision(tmp_path, official, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "org").mkdir()
    shutil.copytree(official["tiny"], tmp_path / "org" / "tiny")
    assert not is_hub_id("org/tiny") and is_hub_id("org/other")
    model, _ = nvila.load("org/tiny")
    assert model.config.name == "tiny"
    with pytest.raises(CheckpointError, match="revision='v2' applies to hub ids, but org/tiny is a local folder"):
        nvila.load("org/tiny", revision="v2")


def nvila_command(hf_home: Path, *argv: str) -> subprocess.CompletedProcess:
    """The real `nvila` command with huggingface_hub's own environment: HF_HOME and HF_HUB_OFFLINE=1."""
    env = {**os.environ, "HF_HOME": str(hf_home), "HF_HUB_OFFLINE": "1"}
    command = [Path(sys.executable).with_name("nvila"), *argv]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow  # two fresh interpreters (~12 s); `make test-slow` and CI run it
def test_the_command_line_takes_a_hub_id_offline(hf_home, tmp_path):
    noise_image(64, 64).save(tmp_path / "a.png")
    args = ["--image", str(tmp_path / "a.png"), "--prompt", "Q?", "--max-new-tokens", "2"]
    done = nvila_command(hf_home, "generate", "--model", REPO, *args)
    assert done.returncode == 0, done.stderr
    missing = nvila_command(hf_home, "generate", "--model", "nvila-test/missing", *args)
    assert missing.returncode == 1 and missing.stderr.count("\n") == 1
    assert missing.stderr.startswith("nvila generate: error: nvila-test/missing is neither a local folder nor in")
