"""Synthetic datasets: determinism, answers re-derived from the scene and checked against the pixels, record
format, splits, videos, option errors and the majority baseline."""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import re
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from nvila.errors import ConfigError
from nvila.synth import BACKGROUND, PALETTE, charts, documents, font, interval, shapes, videos
from nvila.synth.writer import TASKS, add_synth_args, load_jsonl, majority_baseline, run_synth, write_dataset
from tests.conftest import assert_modes_follow_umask

SMALL = {"documents": 12, "charts": 12, "shapes": 16, "events": 6}
MAKERS = {
    "documents": documents.make_document,
    "charts": charts.make_chart,
    "shapes": shapes.make_shapes,
    "events": videos.make_events,
}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth") / "ds"
    manifest = write_dataset(root, SMALL, seed=3, image_size=64, heldout=0.25, progress=False)
    return root, manifest


def files_of(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def records_of(root: Path) -> list[dict]:
    return load_jsonl(root / "train.jsonl") + load_jsonl(root / "heldout.jsonl")


def turns(record: dict) -> list[tuple[str, str, str]]:
    """(question without placeholders, answer, template) of every turn."""
    conv = record["conversations"]
    questions = [re.sub(r"(<image>|<vila/video>)\n", "", t["value"]) for t in conv[0::2]]
    return list(zip(questions, [t["value"] for t in conv[1::2]], record["meta"]["templates"]))


# ---- an independent oracle: each answer re-derived from the scene description --------------------------------
def count(objects, shape=None, colour=None) -> int:
    return sum((shape in (None, o["shape"])) and (colour in (None, o["colour"])) for o in objects)


def only(items):
    assert len(items) == 1, f"ambiguous question: {items}"
    return items[0]


_C, _S = "(?P<colour>red|green|blue|yellow|purple|orange)", "(?P<shape>circle|square|triangle)"
_OBJ = f"{_C} {_S}"
#: The exact wording of every template's question; the named groups are its arguments.
QUESTIONS = {
    "documents/title": r"What is the title\?",
    "documents/first_word": r"What is the first word of line (?P<n>\d+)\?",
    "documents/last_word": r"What is the last word of line (?P<n>\d+)\?",
    "documents/num_lines": r"How many lines of text are below the title\?",
    "documents/word_line": r"Which line contains the word '(?P<word>[a-z]+)'\?",
    "charts/bar_value": r"What is the value of (?P<label>\w+)\?",
    "charts/bar_max": r"Which bar is the tallest\?",
    "charts/bar_min": r"Which bar is the shortest\?",
    "charts/bar_colour": r"What colour is the bar of (?P<label>\w+)\?",
    "charts/bar_count": r"How many bars are there\?",
    "charts/line_value": r"What is the value for (?P<label>\w+)\?",
    "charts/line_max": r"Which (?P<unit>month|day) has the highest value\?",
    "charts/line_min": r"Which (?P<unit>month|day) has the lowest value\?",
    "charts/line_trend": r"Does the value go up or down from (?P<a>\w+) to (?P<b>\w+)\?",
    "charts/line_colour": r"What colour is the line\?",
    "shapes/count_total": r"How many shapes are there\?",
    "shapes/count_shape": f"How many {_S}s are there\\?",
    "shapes/count_colour": f"How many {_C} shapes are there\\?",
    "shapes/colour_of": f"What colour is the {_S}\\?",
    "shapes/shape_of": f"What shape is the {_C} one\\?",
    "shapes/exists": f"Is there a {_OBJ}\\?",
    "shapes/compare_count": f"Which image has more {_S}s\\?",
    "shapes/total_two": r"How many shapes are there in the two images together\?",
    "events/when_appear": f"When does the {_OBJ} appear\\?",
    "events/when_move": f"When does the {_OBJ} move\\?",
    "events/count": r"How many objects appear in the video\?",
    "events/direction": f"Which direction does the {_OBJ} move\\?",
    "events/what_moves": r"Which object moves\?",
    "events/first": r"Which object appears first\?",
}
#: source -> the names of its templates
TEMPLATES = {
    src: {t.split("/")[1] for t in QUESTIONS if t.startswith(src + "/")}
    for src in ("documents", "charts", "shapes", "events")
}


def expected_answer(source: str, scene: dict, question: str, template: str) -> str:
    assert template.split("/")[0] == source
    match = re.fullmatch(QUESTIONS[template], question)
    assert match, (template, question)
    g = match.groupdict()
    name = template.split("/")[1]
    if source == "documents":
        lines = scene["lines"]
        n = int(g.get("n") or 0)
        return {
            "title": lambda: scene["title"],
            "first_word": lambda: lines[n - 1][0],
            "last_word": lambda: lines[n - 1][-1],
            "num_lines": lambda: str(len(lines)),
            "word_line": lambda: str(only([i for i, words in enumerate(lines, 1) if g["word"] in words])),
        }[name]()
    if source == "charts":
        items = scene["bars"] if scene["kind"] == "bar" else scene["points"]
        by_label = {item["label"]: item for item in items}
        ranked = sorted(items, key=lambda item: item["value"])
        if scene["kind"] == "line" and "unit" in g:
            assert g["unit"] == scene["unit"]
        return {
            "bar_value": lambda: str(by_label[g["label"]]["value"]),
            "line_value": lambda: str(by_label[g["label"]]["value"]),
            "bar_max": lambda: ranked[-1]["label"],
            "line_max": lambda: ranked[-1]["label"],
            "bar_min": lambda: ranked[0]["label"],
            "line_min": lambda: ranked[0]["label"],
            "bar_colour": lambda: by_label[g["label"]]["colour"],
            "bar_count": lambda: str(len(items)),
            "line_trend": lambda: "up" if by_label[g["b"]]["value"] > by_label[g["a"]]["value"] else "down",
            "line_colour": lambda: scene["colour"],
        }[name]()
    if source == "shapes":
        images = [s["objects"] for s in scene["images"]]
        objs, shape, colour = images[0], g.get("shape"), g.get("colour")
        assert (len(images) == 2) == (name in ("compare_count", "total_two"))
        return {
            "count_total": lambda: str(len(objs)),
            "count_shape": lambda: str(count(objs, shape=shape)),
            "count_colour": lambda: str(count(objs, colour=colour)),
            "colour_of": lambda: only([o["colour"] for o in objs if o["shape"] == shape]),
            "shape_of": lambda: only([o["shape"] for o in objs if o["colour"] == colour]),
            "exists": lambda: "yes" if count(objs, shape, colour) else "no",
            "compare_count": lambda: ["first", "second"][count(images[1], shape) > count(images[0], shape)],
            "total_two": lambda: str(sum(map(len, images))),
        }[name]()
    objects = scene["objects"]
    named = {f"{o['colour']} {o['shape']}": o for o in objects}
    target = named.get(f"{g.get('colour')} {g.get('shape')}")
    movers = [label for label, o in named.items() if o["move"]]
    first = min(o["start"] for o in objects)
    return {
        "when_appear": lambda: f"{target['start']:.1f} - {target['end']:.1f} seconds",
        "when_move": lambda: f"{target['move']['start']:.1f} - {target['move']['end']:.1f} seconds",
        "count": lambda: str(len(objects)),
        "direction": lambda: target["move"]["direction"],
        "what_moves": lambda: only(movers),
        "first": lambda: only([label for label, o in named.items() if o["start"] == first]),
    }[name]()


def check_answers(source: str, scene: dict, qa: list[tuple[str, str, str]]) -> None:
    assert qa, "a sample without questions"
    assert len({t for _, _, t in qa}) == len(qa), "two questions of one template in one sample"
    for question, answer, template in qa:
        assert answer == expected_answer(source, scene, question, template), (question, answer, scene)


# ---- pixels agree with the scene --------------------------------------------------------------------------
def nearest_colour(pixel) -> str:
    names = {**PALETTE, "background": BACKGROUND}
    return min(names, key=lambda n: sum((int(a) - b) ** 2 for a, b in zip(pixel, names[n])))


def check_shapes_pixels(image: Image.Image, scene: dict) -> None:
    a = np.asarray(image).astype(int)
    for o in scene["objects"]:
        assert tuple(a[o["y"], o["x"]]) == PALETTE[o["colour"]]
    # every non-background pixel belongs to a listed shape
    ys, xs = np.nonzero((a != BACKGROUND).any(-1))
    owned = np.zeros(len(xs), bool)
    for o in scene["objects"]:
        owned |= np.hypot(xs - o["x"], ys - o["y"]) <= shapes.extent(o["shape"], o["r"]) + 1.5
    assert owned.all()
    for o in scene["objects"]:
        assert shape_at(a, o["x"], o["y"], o["r"], PALETTE[o["colour"]]) == o["shape"]


def shape_at(a: np.ndarray, x: int, y: int, r: int, colour) -> str:
    """Tell the shape from a few pixels: a square fills the corners of its box, a circle (not a triangle)
    reaches 3/4 of its radius below the centre, a triangle reaches up to its apex."""

    def on(dx: int, dy: int) -> bool:
        return tuple(a[y + dy, x + dx]) == colour

    c = round(r * shapes.SQUARE_HALF)
    corners = [on(dx * c, dy * c) for dx in (-1, 1) for dy in (-1, 1)]
    if all(corners):
        return "square"
    if any(corners):
        return "unknown"
    if on(0, round(0.75 * r)):
        return "circle"
    return "triangle" if on(0, -r + 2) else "unknown"


def check_document_pixels(image: Image.Image, scene: dict) -> None:
    ink = (np.asarray(image) < 128).all(-1)  # [h, w]
    lh, top = scene["line_height"], scene["top"]
    assert ink[: top - 1].any(), "no title"
    for i, words in enumerate(scene["lines"]):
        band = ink[top + i * lh : top + (i + 1) * lh]
        cols = np.nonzero(band.any(0))[0]
        width = font(scene["body_px"]).getlength(" ".join(words))
        assert cols.size and abs(cols[0] - scene["margin"]) <= 2 and abs(cols[-1] - scene["margin"] - width) <= 3
    assert not ink[top + len(scene["lines"]) * lh :].any(), "ink below the last line"


def check_chart_pixels(image: Image.Image, scene: dict) -> None:
    a = np.asarray(image).astype(int)
    base = scene["baseline"]
    items = scene["bars"] if scene["kind"] == "bar" else scene["points"]
    xs = [round(x) for x in charts._centres(len(items), scene)]
    if scene["kind"] == "bar":
        heights = []
        for x, bar in zip(xs, items):
            column = (a[:base, x] == PALETTE[bar["colour"]]).all(-1)
            heights.append(int(column.sum()))
            assert heights[-1] == max(1, round(bar["value"] / 100 * (base - scene["top"])))  # value / 100 of the plot
            assert column[base - 1], "bar does not reach the baseline"
        assert np.argsort(heights).tolist() == np.argsort([b["value"] for b in items]).tolist()
        ranked = sorted(heights)
        assert len(set(heights)) == len(heights) and ranked[1] - ranked[0] >= 2 and ranked[-1] - ranked[-2] >= 2
    else:
        colour = PALETTE[scene["colour"]]
        ys = [base - charts._height(p["value"], scene) for p in items]
        assert all(tuple(a[y, x]) == colour for x, y in zip(xs, ys))


# ---- tests ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("source", list(MAKERS))
def test_generators_answers_match_scene_and_cover_templates(source):
    size = (64, 64)
    seen = set()
    for seed in range(120 if source != "events" else 60):
        sample = MAKERS[source](np.random.default_rng(seed), size, 3)
        qa = [(t.question, t.answer, t.template) for t in sample.turns]
        assert 1 <= len(qa) <= 3
        check_answers(source, sample.scene, qa)
        seen |= {t.split("/")[1] for _, _, t in qa}
        if source == "events":
            assert qa[0][2] in ("events/when_appear", "events/when_move"), "the first question localizes"
        if source == "shapes":  # shapes never touch, so they can be counted
            for scene in sample.scene["images"]:
                objs = scene["objects"]
                for i, a in enumerate(objs):
                    for b in objs[i + 1 :]:
                        reach = shapes.extent(a["shape"], a["r"]) + shapes.extent(b["shape"], b["r"])
                        assert math.hypot(a["x"] - b["x"], a["y"] - b["y"]) > reach + 1
    assert seen == TEMPLATES[source]


def check_nothing_clipped(image: Image.Image) -> None:
    a = np.asarray(image)
    border = np.concatenate([a[0], a[-1], a[:, 0], a[:, -1]])
    assert (border == BACKGROUND).all(), "something drawn over the edge"


@pytest.mark.parametrize("size", [(64, 64), (96, 64), (64, 160), (300, 64), (448, 448)])
def test_pixels_agree_with_scene(size):
    for seed in range(10 if size[0] < 448 else 3):
        rng = np.random.default_rng(seed)
        doc = documents.make_document(rng, size)
        check_document_pixels(doc.images[0], doc.scene)
        chart = charts.make_chart(rng, size)
        check_chart_pixels(chart.images[0], chart.scene)
        for image in (doc.images[0], chart.images[0]):
            assert image.size == size
            check_nothing_clipped(image)
        shape = shapes.make_shapes(rng, size)
        for image, scene in zip(shape.images, shape.scene["images"]):
            assert image.size == size
            check_shapes_pixels(image, scene)


def test_same_seed_same_bytes_other_seed_differs(dataset, tmp_path):
    root, manifest = dataset
    # in another process with other string hashes, drawn by 2 worker processes: nothing may depend on either
    code = (
        "import sys; from nvila.synth.writer import write_dataset; "
        f"write_dataset(sys.argv[1], {SMALL!r}, seed=3, image_size=64, heldout=0.25, progress=False, workers=2)"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "again")], check=True, env=env, timeout=120)
    assert files_of(tmp_path / "again") == files_of(root)
    assert json.loads((tmp_path / "again/manifest.json").read_text()) == manifest
    other = write_dataset(tmp_path / "other", SMALL, seed=4, image_size=64, heldout=0.25, progress=False)
    assert other["content_hash"] != manifest["content_hash"]
    a, b = files_of(root), files_of(tmp_path / "other")
    assert a["train.jsonl"] != b["train.jsonl"]
    assert sum(a[k] != b.get(k) for k in a if k.endswith((".png", ".mp4"))) > 0.9 * sum(
        k.endswith((".png", ".mp4")) for k in a
    )


def test_heldout_does_not_depend_on_train_count(tmp_path):
    one = write_dataset(tmp_path / "a", {"shapes": 6}, seed=1, image_size=64, heldout={"shapes": 3}, progress=False)
    two = write_dataset(tmp_path / "b", {"shapes": 10}, seed=1, image_size=64, heldout={"shapes": 3}, progress=False)
    assert (one["tasks"]["shapes"], two["tasks"]["shapes"]) == ({"train": 3, "heldout": 3}, {"train": 7, "heldout": 3})
    assert (tmp_path / "a/heldout.jsonl").read_bytes() == (tmp_path / "b/heldout.jsonl").read_bytes()
    assert (tmp_path / "b/train.jsonl").read_text().startswith((tmp_path / "a/train.jsonl").read_text())


def test_records_format_and_answers(dataset):
    root, manifest = dataset
    assert_modes_follow_umask(root)
    train, heldout = load_jsonl(root / "train.jsonl"), load_jsonl(root / "heldout.jsonl")
    assert all(line.endswith("}") for line in (root / "train.jsonl").read_text().splitlines())
    for task, n in SMALL.items():
        k = math.floor(n * 0.25 + 0.5)
        assert manifest["tasks"][task] == {"train": n - k, "heldout": k}
        assert sum(r["source"] == task for r in train) == n - k and sum(r["source"] == task for r in heldout) == k
    n_images = 0
    for record in train + heldout:
        media = record.get("video") or record["image"]
        media = [media] if isinstance(media, str) else media
        assert ("video" in record) == (record["source"] == "events") and ("image" in record) != ("video" in record)
        conv = record["conversations"]
        assert [t["from"] for t in conv] == ["human", "gpt"] * (len(conv) // 2) and conv
        text = "".join(t["value"] for t in conv)
        placeholder = "<vila/video>" if "video" in record else "<image>"
        assert text.count(placeholder) == len(media) and conv[0]["value"].startswith(placeholder)
        assert "<image>" not in text if "video" in record else "<vila/video>" not in text
        assert record["meta"]["template"] == record["meta"]["templates"][0]
        assert len(record["meta"]["templates"]) == len(conv) // 2
        check_answers(record["source"], record["meta"]["scene"], turns(record))
        for path in media:
            assert (root / path).is_file() and not Path(path).is_absolute()
        # the saved image is the drawing of the record's own scene
        if record["source"] in ("documents", "charts"):
            module = documents if record["source"] == "documents" else charts
            assert np.array_equal(
                np.asarray(Image.open(root / media[0])), np.asarray(module.render(record["meta"]["scene"]))
            )
        if record["source"] == "shapes":
            for path, scene in zip(media, record["meta"]["scene"]["images"], strict=True):
                assert np.array_equal(np.asarray(Image.open(root / path)), np.asarray(shapes.render_scene(scene)))
                n_images += 1
    assert n_images > SMALL["shapes"], "no multi-image record"
    ids = [r["id"] for r in train + heldout]
    assert len(set(ids)) == len(ids)


def test_heldout_disjoint_from_train(dataset):
    root, _ = dataset
    train, heldout = load_jsonl(root / "train.jsonl"), load_jsonl(root / "heldout.jsonl")

    def media(records):
        out = []
        for r in records:
            m = r.get("video") or r["image"]
            out += [m] if isinstance(m, str) else m
        return out

    assert not {r["id"] for r in train} & {r["id"] for r in heldout}
    assert not set(media(train)) & set(media(heldout))
    digests = [{hashlib.sha256((root / p).read_bytes()).digest() for p in media(rs)} for rs in (train, heldout)]
    assert not digests[0] & digests[1]


def test_train_repeating_heldout_media_is_redrawn(tmp_path, monkeypatch):
    """A generator that draws only two different images: train must avoid the held-out one."""
    from nvila.synth import Sample, Turn, writer

    def two_images(rng, size, max_questions):
        colour = ("red", "blue")[int(rng.integers(2))]
        image = Image.new("RGB", size, PALETTE[colour])
        return Sample(turns=[Turn("What colour?", colour, "shapes/x")], scene={}, images=[image])

    monkeypatch.setitem(writer.TASKS, "shapes", writer.Task(two_images, video=False, default_count=1))
    write_dataset(tmp_path / "d", {"shapes": 6}, heldout={"shapes": 1}, image_size=64, progress=False)
    held = load_jsonl(tmp_path / "d/heldout.jsonl")[0]["conversations"][1]["value"]
    assert {r["conversations"][1]["value"] for r in load_jsonl(tmp_path / "d/train.jsonl")} == {"red", "blue"} - {held}


def test_videos_decode_and_events_fit(dataset):
    root, _ = dataset
    records = [r for r in records_of(root) if r["source"] == "events"]
    assert len(records) == SMALL["events"]
    for record in records:
        meta = record["meta"]
        scene, fps, duration = meta["scene"], meta["fps"], meta["duration"]
        assert fps == videos.FPS and 4 <= duration <= 8
        with av.open(str(root / record["video"])) as container:
            frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]  # [h, w, 3] each
        assert len(frames) == round(duration * fps) and frames[0].shape == (64, 64, 3)
        assert meta["events"] == sorted(meta["events"], key=lambda e: (e["start"], e["end"], e["label"]))
        for event in meta["events"]:
            assert 0 <= event["start"] < event["end"] <= duration
            assert round(event["start"] * fps) == event["start"] * fps and f"{event['start']:.1f}" == str(
                event["start"]
            )
            assert re.fullmatch(r"(\w+) (\w+) (appears|moves (left|right|up|down))", event["label"])
        for _, answer, template in turns(record):
            if template in ("events/when_appear", "events/when_move"):
                assert re.fullmatch(r"\d+\.\d - \d+\.\d seconds", answer)
        # what the pixels show: each object's colour at its centre exactly while it is visible
        for obj in scene["objects"]:
            for i, frame in enumerate(frames):
                x, y = videos.centre(scene, obj, i / fps)
                seen = nearest_colour(frame[round(y), round(x)])
                shown = obj["start"] <= i / fps < obj["end"]  # frame i shows time i / fps
                assert seen == (obj["colour"] if shown else "background"), (obj, i)
            if obj["move"]:  # it moves the asked way
                before = videos.centre(scene, obj, obj["move"]["start"])
                after = videos.centre(scene, obj, obj["move"]["end"])
                delta = {"right": after[0] - before[0], "left": before[0] - after[0]}
                delta |= {"down": after[1] - before[1], "up": before[1] - after[1]}
                assert delta[obj["move"]["direction"]] > 0


def test_localization_answer_format():
    assert interval(1.2, 3.4) == "1.2 - 3.4 seconds" and interval(0, 6) == "0.0 - 6.0 seconds"
    # whole frames and whole tenths: 4 frames at 8 fps, 1 at 10 fps, 5 at 25 fps
    assert [videos.grid_step(fps) for fps in (8, 10, 25, 6)] == [
        Fraction(1, 2),
        Fraction(1, 10),
        Fraction(1, 5),
        Fraction(1, 2),
    ]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"tasks": {"cats": 3}}, "unknown task 'cats'"),
        ({"tasks": ["shapes", "dogs"]}, "unknown task 'dogs'"),
        ({"tasks": {"shapes": -1}}, "must be an integer >= 0"),
        ({"tasks": {"shapes": 0}}, "nothing to generate"),
        ({"heldout": 1.0}, r"held-out fraction must be in \[0, 1\)"),
        ({"heldout": -0.1}, r"held-out fraction must be in \[0, 1\)"),
        ({"heldout": {"shapes": 5}}, r"must be an integer in \[0, 4\]"),
        ({"heldout": {"charts": 1}}, "not among the tasks"),
        ({"image_size": 16}, r"in \[64, 4096\]"),
        ({"image_size": 64.0}, "must be N or"),
        ({"video_size": (65, 64)}, "must be even"),
        ({"seed": -1}, "seed must be"),
        ({"max_questions": 0}, "max questions"),
        ({"page_lines": 0}, "page lines must be"),
        ({"page_lines": 2.0}, "page lines must be"),
        ({"workers": 0}, "workers must be"),
    ],
)
def test_bad_options_raise_config_error(tmp_path, kwargs, message):
    options = {"tasks": {"shapes": 4}, "image_size": 64, "progress": False, **kwargs}
    with pytest.raises(ConfigError, match=message):
        write_dataset(tmp_path / "d", **options)
    assert list(tmp_path.iterdir()) == []


def test_existing_folder_and_overwrite(tmp_path):
    root = tmp_path / "d"
    first = write_dataset(root, {"shapes": 2}, seed=0, image_size=64, progress=False)
    with pytest.raises(ConfigError, match="already exists"):
        write_dataset(root, {"shapes": 2}, seed=1, image_size=64, progress=False)
    second = write_dataset(root, {"charts": 3}, seed=1, image_size=64, overwrite=True, progress=False)
    assert second["content_hash"] != first["content_hash"] and not (root / "images/shapes").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["d"], "temporary folders left behind"
    precious = tmp_path / "home"
    precious.mkdir()
    (precious / "thesis.tex").write_text("x")
    with pytest.raises(ConfigError, match="not empty and holds no manifest.json"):
        write_dataset(precious, {"shapes": 2}, image_size=64, overwrite=True, progress=False)
    assert (precious / "thesis.tex").read_text() == "x"


def test_interrupted_run_leaves_nothing(tmp_path, monkeypatch):
    from nvila.synth import writer

    calls = []

    def failing(rng, size, max_questions):
        calls.append(1)
        if len(calls) > 3:
            raise KeyboardInterrupt
        return shapes.make_shapes(rng, size, max_questions)

    root = tmp_path / "d"
    write_dataset(root, {"charts": 2}, image_size=64, progress=False)
    before = files_of(root)
    monkeypatch.setitem(writer.TASKS, "shapes", writer.Task(failing, video=False, default_count=1))
    for target, overwrite in ((tmp_path / "new", False), (root, True)):
        calls.clear()
        with pytest.raises(KeyboardInterrupt):
            write_dataset(target, {"shapes": 10}, image_size=64, overwrite=overwrite, progress=False)
    assert [p.name for p in tmp_path.iterdir()] == ["d"] and files_of(root) == before


def test_cli_parses_options_and_writes(tmp_path, capsys):
    from nvila.cli import main

    with pytest.raises(SystemExit):
        main(["synth", "--help"])
    synth_help = capsys.readouterr().out
    assert "examples:" in synth_help and "--page-lines" in synth_help
    parser = argparse.ArgumentParser(prog="nvila synth")
    add_synth_args(parser)
    out = tmp_path / "cli"
    args = parser.parse_args(
        [
            "--out",
            str(out),
            "--tasks",
            "shapes=5,events=2",
            "--image-size",
            "64",
            "--heldout",
            "shapes=1",
            "--seed",
            "2",
        ]
    )
    assert run_synth(args) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["tasks"] == {"shapes": {"train": 4, "heldout": 1}, "events": {"train": 2, "heldout": 0}}
    assert manifest["video_size"] == [64, 64] and manifest["seed"] == 2
    assert str(out) in capsys.readouterr().out
    for argv, message in [
        (["--tasks", "shapes=-3"], "must be an integer >= 0"),
        (["--tasks", "shapes=x"], "expected NAME=COUNT"),
        (["--tasks", "squares=3"], "unknown task 'squares'"),
        (["--heldout", "1.5"], r"in \[0, 1\)"),
        (["--heldout", "half"], "expected a fraction"),
        (["--image-size", "64y64"], "expected N or WIDTHxHEIGHT"),
        ([], "already exists"),
    ]:
        with pytest.raises(ConfigError, match=message):
            run_synth(parser.parse_args(["--out", str(out), *argv]))


def test_default_tasks_are_all_tasks():
    parser = argparse.ArgumentParser()
    add_synth_args(parser)
    assert parser.parse_args(["--out", "x"]).tasks is None
    assert set(TASKS) == set(TEMPLATES) and [t.default_count for t in TASKS.values()] == [1000, 500, 1000, 200]


def test_vocabulary_words_are_distinct_and_fit():
    assert len(set(documents.VOCABULARY)) == len(documents.VOCABULARY) >= 200
    assert all(w.isalpha() and w.islower() for w in documents.VOCABULARY)


def test_majority_baseline_hand_made():
    def rec(source, answers, templates):
        conv = []
        for a in answers:
            conv += [{"from": "human", "value": "q"}, {"from": "gpt", "value": a}]
        return {"source": source, "conversations": conv, "meta": {"template": templates[0], "templates": templates}}

    records = [
        rec("shapes", ["2"], ["shapes/count"]),
        rec("shapes", ["2"], ["shapes/count"]),
        rec("shapes", ["3"], ["shapes/count"]),
        rec("shapes", ["yes", "2"], ["shapes/exists", "shapes/count"]),  # per template, not per source
        rec("shapes", ["no"], ["shapes/exists"]),
        rec("charts", ["up"], ["charts/trend"]),
        rec("charts", ["down"], ["charts/trend"]),  # tie: the smaller string, "down"
    ]
    # shapes: count -> "2" right 3 of 4; exists -> tie yes/no -> "no" right 1 of 2; 4 of 6 answers
    assert majority_baseline(records) == {"charts": 0.5, "shapes": 4 / 6}
    # majority answers taken from other records
    fit = [rec("shapes", ["3"], ["shapes/count"]), rec("charts", ["up"], ["charts/trend"])]
    assert majority_baseline(records, fit=fit) == {"charts": 0.5, "shapes": 1 / 6}
    with pytest.raises(ValueError, match="2 templates for 1 answers"):
        majority_baseline([rec("shapes", ["2"], ["a", "b"])])


def test_manifest_baseline_is_below_one_and_recomputable(dataset):
    root, manifest = dataset
    train, heldout = load_jsonl(root / "train.jsonl"), load_jsonl(root / "heldout.jsonl")
    assert manifest["majority_baseline"]["train"] == majority_baseline(train)
    assert manifest["majority_baseline"]["heldout"] == majority_baseline(heldout, fit=train)
    assert all(0 <= v < 1 for v in manifest["majority_baseline"]["train"].values())
    assert manifest["records"] == {"train": len(train), "heldout": len(heldout)}


def test_captions_add_one_scene_derived_turn_and_change_nothing_else(dataset, tmp_path):
    root, manifest = dataset
    captioned = write_dataset(tmp_path / "c", SMALL, seed=3, image_size=64, heldout=0.25, captions=True, progress=False)
    assert (captioned["captions"], manifest["captions"]) == (True, False)
    plain, with_captions = files_of(root), files_of(tmp_path / "c")
    assert {k: v for k, v in with_captions.items() if not k.endswith(".jsonl") and k != "manifest.json"} == {
        k: v for k, v in plain.items() if not k.endswith(".jsonl") and k != "manifest.json"
    }
    seen = set()
    for before, after in zip(records_of(root), records_of(tmp_path / "c"), strict=True):
        if before["source"] == "events":  # no caption for videos
            assert after == before
            continue
        assert turns(after)[:-1] == turns(before)
        question, answer, template = turns(after)[-1]
        seen.add(template)
        assert template == f"{before['source']}/describe" and question.endswith(".")
        scene = before["meta"]["scene"]
        if before["source"] == "documents":
            assert answer.split("\n") == [scene["title"], *(" ".join(words) for words in scene["lines"])]
        elif before["source"] == "charts" and scene["kind"] == "bar":
            assert answer == "; ".join(f"{b['label']}: {b['value']}, {b['colour']}" for b in scene["bars"])
        elif before["source"] == "charts":
            assert answer.startswith(f"{scene['colour']} line. ")
            assert [int(v) for v in re.findall(r": (\d+)", answer)] == [p["value"] for p in scene["points"]]
        else:
            images = scene["images"]
            listed = re.sub(r"Image \d: ", "", answer).replace(".", ",").split(",")
            named = sorted(x.strip() for x in listed if x.strip())
            assert named == sorted(f"{o['colour']} {o['shape']}" for im in images for o in im["objects"])
            first = images[0]["objects"]
            if len(images) == 1 and first:  # listed top to bottom
                assert answer.startswith(f"{min(first, key=lambda o: (o['y'], o['x']))['colour']} ")
    assert seen == {"documents/describe", "charts/describe", "shapes/describe"}


@pytest.mark.parametrize("most", [1, 3])
def test_page_lines_caps_the_lines_of_pages_and_the_lines_asked_about(tmp_path, most):
    tasks = {"documents": 24, "shapes": 4}
    manifest = write_dataset(tmp_path / "p", tasks, seed=3, image_size=192, page_lines=most, progress=False)
    assert manifest["page_lines"] == most
    records = records_of(tmp_path / "p")
    pages = [r for r in records if r["source"] == "documents"]
    counts = [len(r["meta"]["scene"]["lines"]) for r in pages]
    assert max(counts) == most and min(counts) >= min(2, most)
    asked = [int(n) for r in pages for q, _, _ in turns(r) for n in re.findall(r"line (\d+)", q)]
    assert asked and max(asked) <= most
    # the other tasks draw exactly what they draw without the option
    plain = write_dataset(tmp_path / "q", tasks, seed=3, image_size=192, progress=False)
    assert "page_lines" not in plain
    assert [r for r in records_of(tmp_path / "q") if r["source"] == "shapes"] == [
        r for r in records if r["source"] == "shapes"
    ]
