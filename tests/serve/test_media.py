"""Local image paths: refused by default; with --allow-local-media DIR, read only when they resolve inside DIR."""

from __future__ import annotations

import os

import pytest

from nvila.serve.limits import ServeSettings
from nvila.serve.media import image_bytes
from nvila.serve.schema import ApiError
from tests.conftest import noise_image
from tests.serve.conftest import chat, image_part, text_part

pytestmark = pytest.mark.anyio
URL = "/v1/chat/completions"


@pytest.fixture
def media(tmp_path):
    """tmp/media/{inside.png, sub/deep.png, escape.png -> ../secret.png, up -> ..} and tmp/secret.png."""
    folder = tmp_path / "media"
    (folder / "sub").mkdir(parents=True)
    noise_image(40, 30, seed=1).save(folder / "inside.png")
    noise_image(40, 30, seed=2).save(folder / "sub" / "deep.png")
    noise_image(40, 30, seed=3).save(tmp_path / "secret.png")
    os.symlink(tmp_path / "secret.png", folder / "escape.png")
    os.symlink(tmp_path, folder / "up")
    return folder


def status_of(url: str, settings: ServeSettings) -> int | bytes:
    try:
        return image_bytes(url, settings)
    except ApiError as e:
        return e.status


def test_paths_inside_the_folder_are_read_in_every_spelling(media):
    settings = ServeSettings(allow_local_media=media)
    expected = (media / "inside.png").read_bytes()
    for url in ("inside.png", "./sub/../inside.png", str(media / "inside.png"), f"file://{media / 'inside.png'}"):
        assert status_of(url, settings) == expected, url
    assert (
        status_of("file://" + str(media / "sub" / "deep.png").replace("deep", "d%65ep"), settings)
        == (media / "sub" / "deep.png").read_bytes()
    )


def test_paths_resolving_outside_the_folder_are_403(media):
    settings = ServeSettings(allow_local_media=media)
    outside = media.parent / "secret.png"
    for url in (
        str(outside),
        "../secret.png",
        "sub/../../secret.png",
        f"file://{outside}",
        "escape.png",
        "up/secret.png",
    ):
        assert status_of(url, settings) == 403, url
    assert status_of("/etc/passwd", settings) == 403


def test_local_paths_are_refused_without_the_flag_and_missing_files_are_400(media):
    assert status_of(str(media / "inside.png"), ServeSettings()) == 400
    assert status_of(f"file://{media / 'inside.png'}", ServeSettings()) == 400
    assert status_of("missing.png", ServeSettings(allow_local_media=media)) == 400


def test_a_missing_media_folder_is_a_configuration_error(tmp_path):
    with pytest.raises(ValueError, match="allow-local-media"):
        ServeSettings(allow_local_media=tmp_path / "nope")


async def test_local_media_over_http(asgi, pipeline, media):
    from tests.serve.conftest import scripted_pipeline

    client = asgi(scripted_pipeline(pipeline, "a picture"), allow_local_media=media)
    ok = await client.post(URL, json=chat([image_part("inside.png"), text_part("what?")]))
    assert ok.status_code == 200 and ok.json()["choices"][0]["message"]["content"] == "a picture"
    refused = await client.post(URL, json=chat([image_part("escape.png"), text_part("what?")]))
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "local_media_refused"
    assert "secret" not in refused.text  # the answer does not describe what lies outside
    plain = asgi(scripted_pipeline(pipeline, "a picture"))
    assert (await plain.post(URL, json=chat([image_part(str(media / "inside.png"))]))).status_code == 400
