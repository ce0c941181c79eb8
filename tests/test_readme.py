"""The README's usage block, run as written and in order, in a fresh folder that holds only the repository's
`src/` and `recipes/` (so the data, runs and results the commands make are their own). Only a command that
downloads a released checkpoint or needs a GPU is skipped, with that reason."""

from __future__ import annotations

import json
import re
import shlex
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import torch

from nvila.cli import main

ROOT = Path(__file__).resolve().parents[1]
RELEASED_ORG = "Efficient-Large-Model/"  #: the hub organisation of the released NVILA checkpoints


def readme_commands() -> list[list[str]]:
    """The `nvila ...` lines of the README's first bash block under "## Use", continuation lines joined."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = re.search(r"## Use\n.*?```bash\n(.*?)```", text, re.DOTALL)
    assert block, "README.md has no bash block under '## Use'"
    lines = block.group(1).replace("\\\n", " ").splitlines()
    return [shlex.split(line, comments=True) for line in lines if line.strip()]


COMMANDS = readme_commands()


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("readme")
    for name in ("src", "recipes"):
        (root / name).symlink_to(ROOT / name)
    return root


def downloads(argv: list[str]) -> bool:
    """True when the command's --model is a released NVILA model's hub id."""
    return "--model" in argv and argv[argv.index("--model") + 1].startswith(RELEASED_ORG)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str, body: dict | None = None) -> dict:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


def serve_and_ask(argv: list[str], cwd: Path) -> None:
    """Start the server on a free port instead of the README's, ask it one question, stop it."""
    port = free_port()
    argv = [*argv[: argv.index("--port") + 1], str(port), *argv[argv.index("--port") + 2 :]]
    server = subprocess.Popen(
        [Path(sys.executable).with_name("nvila"), *argv], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None, server.stdout.read().decode()
            try:
                assert get(f"http://127.0.0.1:{port}/health")["status"] == "ok"
                break
            except OSError:
                assert time.monotonic() < deadline, "the server did not answer /health within 120 s"
                time.sleep(0.5)
        model = get(f"http://127.0.0.1:{port}/v1/models")["data"][0]["id"]
        answer = get(
            f"http://127.0.0.1:{port}/v1/chat/completions",
            {"model": model, "messages": [{"role": "user", "content": "Hello"}], "max_tokens": 4},
        )
        assert answer["choices"][0]["finish_reason"] in ("stop", "length")
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_the_usage_block_is_what_this_test_expects():
    """Every line is an `nvila` command, and only the last needs something this machine lacks."""
    assert COMMANDS and all(argv[0] == "nvila" for argv in COMMANDS)
    assert [i for i, argv in enumerate(COMMANDS) if downloads(argv)] == [len(COMMANDS) - 1]


def command_params() -> list:
    """One test per line; the server (a fresh interpreter, ~6 s) runs with the slow tests (`make test-slow`, CI)."""
    slow = [pytest.mark.slow]
    return [
        pytest.param(i, marks=slow if argv[1] == "serve" else (), id=" ".join(argv[:2]))
        for i, argv in enumerate(COMMANDS)
    ]


@pytest.mark.parametrize("index", command_params())
def test_readme_command_runs(index, workspace, monkeypatch, capsys):
    argv = COMMANDS[index][1:]
    if downloads(argv):
        pytest.skip("downloads a released checkpoint from the Hugging Face hub (no network in tests)")
    if "cuda" in argv and not torch.cuda.is_available():
        pytest.skip("needs an NVIDIA GPU")
    monkeypatch.chdir(workspace)
    if argv[0] == "serve":
        serve_and_ask(argv, workspace)
        return
    assert main(argv) == 0, capsys.readouterr().err
    if argv[0] != "generate":  # an answer may be empty (the model just trained has learned little)
        assert capsys.readouterr().out.strip()  # every other command says what it did
    out = argv[argv.index("--out") + 1] if "--out" in argv else None
    if out is not None:
        assert (workspace / out).is_dir(), out
