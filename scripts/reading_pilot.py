"""Reading pilots in minutes: train a model's projector + LLM on reading questions over cached tower features.

    python scripts/reading_pilot.py --questions first --word-loss 1 --lr 3e-3 --steps 1500
    python scripts/reading_pilot.py --questions first:1 --word-loss 1 --lr 3e-3 --steps 1500   # line 1 only
    python scripts/reading_pilot.py --word-loss 1 --curriculum first:1@1000 first:2@750 first@1000 --score first:8

Draws `--pages` 192 px document pages (`nvila.synth.documents`, seed 100) and `--test-pages` fresh ones (seed
200), runs the (frozen) tower once per page and keeps its multi-scale features, so a step costs the projector
and the LLM alone. Each step trains on `--batch` questions (AdamW, constant LR, grad clip 1), optionally with the
word loss of `nvila.train.word_loss` on every word of the step's pages, title and body (`--word-loss`). Every
`--eval-every` steps it prints the mean loss (answers + weighted word loss), the word loss, and the share of
questions whose whole answer is the argmax under teacher forcing, on the first 600 train and test questions (and,
with the word loss, "words": the share of those pages' words named at their tokens).
It measures what a recipe would learn (docs/results.md, "Reading and the clock"); `--save DIR` writes the trained
model (official layout) for a longer run to start from (`--model DIR`).

Pages: `--max-lines N` keeps the first N body lines. Questions (`--questions`, comma-separated): first (the first
word of every line), first:N (of lines 1..N, scored per line), last (the last word of every line of two or more
words), title, lines (how many lines the page has). Other arms: `--centre NORM` standardises the projector's output
per channel (its last linear folded) and scales it to that token norm; `--train-tower R` trains the tower too at R x
LR (pixels cached instead of features: ~2x slower a step); `--scales A,B,C` changes the Dynamic-S2 scales (e.g.
64,192,384: a 24 x 24 token raster instead of 12 x 12); `--projector 2x2|3x3` starts from a fresh projector of that
compression (the same initial weights in every arm of one shape); `--resize` shows each page as one tile resized
from it. Table 1 on reading (docs/results.md) is these arms.

Conversations: `--turns K` asks up to K questions about a page in one conversation (a turn each, in a random
order), so a step of `--batch` questions runs the LLM over about batch / K pages instead of batch: cheaper at large
token rasters when pages hold many questions; answers are scored turn by turn. A later turn sits further from the
image than a first one, so an address (a token row) is a different relative position in every turn. `--share K`
keeps single-turn semantics at the same cost: up to K single-turn conversations about a page share one copy of the
image in a row, each seeing the image and its own question only (an attention mask), its positions restarting
where the image ends, so every question is computed exactly as if asked alone.

Geometry: every run first prints the image tokens a page and how often the raster cannot tell lines apart (the
share of lines whose first word's token also holds another line's first word, and of words whose token holds a
word of another line, on the fresh pages); `--steps 0` prints only that.

Curricula: `--curriculum KINDS@STEPS ...` trains on each stage's question kinds in turn (one optimizer, constant LR;
it replaces `--questions` and `--steps`) and reports at the end of every stage too; `--score KINDS` sets the
questions scored (default: the last stage's kinds), e.g. first:8 to see lines 1..8 one by one.

Addressing: `--address-loss W` trains head 0 of LLM layer `--address-layer` to attend, at the position that
predicts each answer, to the image tokens where the answer's word is written; `--number-loss W` trains head 0 of
the layer before to attend there to the question's line number (the first hop). Reports add "addressed" and "on
the number": the share of training questions whose supervised head's argmax is on its targets. `--copy-loss W`
trains the address head's own output at the answering position, read through the final norm and the LM head
alone, to name the answer's first token (the third hop: reading what it attends to); "copied" is the share named.
`--address-centre` makes the address the one token at the word's centre (the word loss's target) instead of every
token along the word. `--word-layer L` (with `--word-loss`) also names each word from the residual stream entering
LLM layer L at its token (through the final norm and the LM head, the same weight), so that what an address head in
layer L reads there already holds the word ("named at layer L" in the reports).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image

from nvila import checkpoint, loader
from nvila.assets import DEFAULT_MODEL
from nvila.data.collate import collate_padded
from nvila.models.nvila.branches import branch_mask, branch_positions, share_prefix
from nvila.models.nvila.processing_nvila import EncodedSample
from nvila.models.nvila.projector import Projector
from nvila.synth import documents
from nvila.train.reading_loss import ReadingLoss, hidden_input, place_answers
from nvila.train.recipe import ReadingSpec
from nvila.train.scene_targets import (
    AnswerTarget,
    SceneSample,
    answer_runs,
    answer_targets,
    batch_targets,
    digit_token_ids,
)
from nvila.train.word_loss import (
    first_token,
    naming_loss,
    token_raster,
    word_loss_mean,
    word_targets,
)

PAGE = (192, 192)


@dataclass
class Conversation:
    """Questions about one page in one row: asked one after the other (one turn each, `--turns`), or each after
    the one shared image (`--share`: single-turn branches, `nvila.models.nvila.branches`)."""

    page: int
    input_ids: list[int]
    labels: list[int]
    kinds: list[str]  #: the kind each question is scored under
    branches: list[tuple[int, int]] = field(default_factory=list)  #: [start, end) of each question's own ids
    #: where each answer read off the page is written, and its question's line number (`scene_targets`)
    answers: list[AnswerTarget] = field(default_factory=list)


@dataclass
class Pages:
    scenes: list[dict]
    inputs: torch.Tensor  #: [pages, tiles, ...] fp16: S2 tower features, or pixel tiles when the tower trains
    block: tuple[int, int] | None  #: the processor's block size (None: one resized tile)
    grid: tuple[int, int]  #: (rows, cols) of tiles the projector's tokens are laid out on


#: The question kinds (`--questions`; first:N asks lines 1..N of "first") and the synth templates they ask.
TEMPLATES = {
    "first": "documents/first_word",
    "last": "documents/last_word",
    "title": "documents/title",
    "lines": "documents/num_lines",
}
#: What the reading losses' reports say (their metrics of `nvila.train.reading_loss`).
READ_REPORTS = (
    ("addressed", "reading_address_accuracy"),
    ("on the number", "reading_number_accuracy"),
    ("copied", "reading_copy_accuracy"),
)
#: `--projector` choices: the official projector types of each compression.
PROJECTORS = {"2x2": "mlp_downsample_2x2_fix", "3x3": "mlp_downsample_3x3_fix"}


def asked(scene: dict, kinds: list[str]) -> list[tuple[str, str, str]]:
    """(question, answer, kind) of a page for the question kinds asked, as `nvila synth` writes them."""
    by_template = documents.questions(scene["title"], scene["lines"])
    out = []
    for kind in kinds:
        name, _, lines = kind.partition(":")
        turns = by_template[TEMPLATES[name]]
        if lines:  # lines 1..N, scored line by line
            out += [(t.question, t.answer, f"line {i}") for i, t in enumerate(turns[: int(lines)], 1)]
        else:
            out += [(t.question, t.answer, kind) for t in turns]
    return out


def question_kinds(text: str) -> list[str]:
    """'first:2,title' -> ['first:2', 'title'], refusing kinds that are not first, first:N, last, title or lines."""
    kinds = [k.strip() for k in text.split(",") if k.strip()]
    bad = [k for k in kinds if not (k in TEMPLATES or (k.startswith("first:") and k[6:].isdigit() and int(k[6:]) > 0))]
    if not kinds or bad:
        known = "first, first:N, last, title, lines"
        raise argparse.ArgumentTypeError(f"unknown question kinds {bad or [text]}: use {known}")
    return kinds


def curriculum_stage(text: str) -> tuple[list[str], int]:
    """'first:2,title@800' -> (['first:2', 'title'], 800): a stage's question kinds and its steps."""
    kinds, at, steps = text.rpartition("@")
    if not at or not steps.isdigit() or int(steps) < 1:
        raise argparse.ArgumentTypeError(f"curriculum stage {text!r}: write KINDS@STEPS, e.g. first:2@800")
    return question_kinds(kinds), int(steps)


@torch.inference_mode()
def draw_pages(model, processor, n: int, seed: int, pixels: bool, max_lines: int = 0) -> Pages:
    cfg, rng = model.nvila_config, np.random.default_rng(seed)
    scenes, inputs, block, grid = [], [], None, (1, 1)
    for _ in range(n):
        scene = documents.make_document(rng, PAGE, 1).scene
        if max_lines:
            scene["lines"] = scene["lines"][:max_lines]
        sample = processor.encode_messages([{"role": "user", "content": "<image>\nx"}], [documents.render(scene)])
        batch = collate_padded([sample], processor.pad_token_id, cfg)
        block = grid = batch.image_block_sizes[0]
        if pixels:
            inputs.append(batch.pixel_values.half())
        else:
            tower = model.vision_tower(batch.pixel_values)
            tiles, (grid,) = model.multiscale_tiles(tower, [block], [len(tower)])
            inputs.append(tiles.half())
        scenes.append(scene)
    return Pages(scenes, torch.stack(inputs), block, grid)


def encode(processor, turns: list[tuple[str, str]]) -> tuple[list[int], list[int]]:
    """(input ids, labels) of a conversation of (question, answer) turns about one page."""
    blank = Image.new("RGB", PAGE, "white")  # the ids of the image tokens do not depend on the pixels
    messages = []
    for question, answer in turns:
        messages += [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
    messages[0]["content"] = "<image>\n" + messages[0]["content"]
    sample = processor.encode_messages(messages, [blank])
    return sample.input_ids, sample.labels


def conversations(
    processor,
    pages: Pages,
    kinds: list[str],
    turns: int,
    rng: np.random.Generator,
    share: int = 1,
    centre: bool = False,
):
    """Every page's questions of `kinds` in rows of up to `turns` turns of one conversation (shuffled when
    turns > 1), or of up to `share` single-turn conversations after one shared image. `centre`: an answer's
    address is the token at its word's centre (the word loss's), not every token along the word."""
    out, cfg, digits = [], processor.config, digit_token_ids(processor.tokenizer)
    per_row = max(turns, share)
    for k, scene in enumerate(pages.scenes):
        qs = asked(scene, kinds)
        if per_row > 1:
            qs = [qs[i] for i in rng.permutation(len(qs))]
        for s in range(0, len(qs), per_row):
            chunk = qs[s : s + per_row]
            if share > 1:
                ids, labels, branches = share_prefix([encode(processor, [(q, a)]) for q, a, _ in chunk])
            else:
                (ids, labels), branches = encode(processor, [(q, a) for q, a, _ in chunk]), []
            sample = EncodedSample(ids, labels, [], [pages.block], branches=branches)
            templates = [TEMPLATES["first" if kind.startswith("line ") else kind] for _, _, kind in chunk]
            boxes = documents.text_boxes(scene)
            answers = answer_targets(sample, templates, [a for _, a, _ in chunk], boxes, PAGE, cfg, digits, centre)
            out.append(Conversation(k, ids, labels, [c[2] for c in chunk], branches, answers))
    return out


def shared_tokens(scenes: list[dict], cfg, block) -> tuple[float, float]:
    """(share of body lines whose first word's token also holds another line's first word, share of body words
    whose token also holds a word of another line): how often the token raster cannot tell lines apart."""
    placeholder = dict.fromkeys(documents.VOCABULARY, 0)
    firsts_shared = lines = words_shared = words = 0
    for scene in scenes:
        tokens = [index for index, _ in word_targets(documents.word_boxes(scene), PAGE, cfg, block, placeholder)]
        line_of, starts, k = [], [], 0
        for i, line in enumerate(scene["lines"]):
            starts.append(tokens[k])
            line_of += [i] * len(line)
            k += len(line)
        owners: dict[int, set[int]] = {}
        for index, line in zip(tokens, line_of):
            owners.setdefault(index, set()).add(line)
        firsts_shared += sum(starts.count(t) > 1 for t in starts)
        words_shared += sum(len(owners[t]) > 1 for t in tokens)
        lines, words = lines + len(starts), words + len(tokens)
    return firsts_shared / max(lines, 1), words_shared / max(words, 1)


def report_order(kind: str) -> tuple:
    """Sort key of the scored kinds: line 1, line 2, ... in number order, then the other kinds, "words" last."""
    line = kind.startswith("line ") and kind[5:].isdigit()
    return kind == "words", not line, int(kind[5:]) if line else 0, kind


def draw_batch(chats: list[Conversation], questions: int, rng: np.random.Generator) -> list[Conversation]:
    """Random conversations (without repeats) that hold at least `questions` questions, or all of them."""
    order = rng.permutation(len(chats))
    held = np.cumsum([len(chats[i].kinds) for i in order])
    return [chats[i] for i in order[: int(np.searchsorted(held, questions)) + 1]]


def forward(model, pages: Pages, questions: list[Conversation], pad_id: int, train_tower: bool):
    """(LLM output, ids [b, l], labels [b, l]) of a batch of conversations about cached pages."""
    inputs = pages.inputs[[q.page for q in questions]].float().flatten(0, 1)
    if train_tower:  # pixel tiles: the whole visual path
        features = model.get_image_features(inputs, [pages.block] * len(questions))
    else:  # cached multi-scale tiles: the projector alone
        features = model.project_multiscale(inputs, [pages.grid] * len(questions))
    b = len(questions)
    length = max(len(q.input_ids) for q in questions)
    ids = torch.full((b, length), pad_id)
    labels = torch.full((b, length), -100)
    positions = torch.zeros((b, length), dtype=torch.long)
    for r, q in enumerate(questions):
        ids[r, : len(q.input_ids)] = torch.tensor(q.input_ids)
        labels[r, : len(q.labels)] = torch.tensor(q.labels)
        positions[r, : len(q.input_ids)] = torch.tensor(branch_positions(len(q.input_ids), q.branches))
    embeds = model.embed_features(ids, features, None)
    mask = branch_mask([[(len(q.input_ids), q.branches)] for q in questions], length)
    out = model.llm(inputs_embeds=embeds, attention_mask=mask, position_ids=positions, labels=labels)
    return out, ids, labels


def answered(out, labels: torch.Tensor) -> list[list[bool]]:
    """Per conversation, per answer (a run of labelled tokens): whether each of its tokens is the argmax given the
    ones before (teacher forcing)."""
    predicted = out.logits.argmax(-1).tolist()
    return [
        [all(t > 0 and row_predicted[t - 1] == row[t] for t in range(start, end)) for start, end in answer_runs(row)]
        for row_predicted, row in zip(predicted, labels.tolist())
    ]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=str(DEFAULT_MODEL), help="the model to start from (default: the shipped one)")
    p.add_argument("--pages", type=int, default=1000, help="training pages (default: 1000)")
    p.add_argument("--test-pages", type=int, default=150, help="fresh pages scored (default: 150)")
    p.add_argument(
        "--questions", type=question_kinds, default="first", help="question kinds, comma-separated (default: first)"
    )
    p.add_argument("--max-lines", type=int, default=0, help="draw at most this many body lines (default: all)")
    p.add_argument("--steps", type=int, default=1500, help="0: report the geometry only")
    p.add_argument("--batch", type=int, default=32, help="questions a step (default: 32)")
    p.add_argument("--turns", type=int, default=1, help="questions a page asked in one conversation (default: 1)")
    p.add_argument("--share", type=int, default=1, help="single-turn questions a page after one image (default: 1)")
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--head-lr-ratio", type=float, default=1.0, help="the LM head's LR = lr x this")
    p.add_argument("--word-loss", type=float, default=0.0, help="weight of the word loss (default: 0, off)")
    p.add_argument("--address-loss", type=float, default=0.0, help="weight of the address loss (default: 0, off)")
    p.add_argument("--address-layer", type=int, default=1, help="the LLM layer whose head 0 it supervises")
    p.add_argument("--number-loss", type=float, default=0.0, help="weight of the number loss (default: 0, off)")
    p.add_argument("--copy-loss", type=float, default=0.0, help="weight of the copy loss (default: 0, off)")
    p.add_argument("--address-centre", action="store_true", help="address the word's centre token only")
    p.add_argument(
        "--word-layer", type=int, default=-1, metavar="L", help="also name the words from the residual entering layer L"
    )
    p.add_argument("--centre", type=float, default=0.0, metavar="NORM", help="standardise the projector output")
    p.add_argument("--train-tower", type=float, default=0.0, metavar="R", help="train the tower at R x lr")
    p.add_argument("--scales", default="", help="Dynamic-S2 scales, e.g. 64,192,384 (default: the model's)")
    p.add_argument(
        "--curriculum", nargs="+", type=curriculum_stage, metavar="KINDS@STEPS", help="stages of question kinds"
    )
    p.add_argument("--score", type=question_kinds, help="question kinds scored (default: the last stage's)")
    p.add_argument("--save", metavar="DIR", help="write the trained model here (official layout)")
    p.add_argument("--projector", choices=sorted(PROJECTORS), help="start from a fresh projector of this compression")
    p.add_argument("--resize", action="store_true", help="one tile per page (resized to the tile), not Dynamic-S2")
    p.add_argument("--eval-every", type=int, default=250)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    if min(args.turns, args.share, args.batch) < 1 or args.steps < 0:
        p.error("--turns, --share and --batch take 1 or more, --steps 0 or more")
    if args.number_loss and (args.turns > 1 or args.address_layer < 1):
        p.error("--number-loss supervises layer --address-layer - 1 (so that must be 1 or more), one question a turn")
    if args.turns > 1 and args.share > 1:
        p.error("--turns and --share are two ways to put a page's questions in one row: choose one")
    if args.word_layer >= 0 and not args.word_loss:
        p.error("--word-layer names the words of the word loss: give --word-loss too")
    if args.train_tower and (args.centre or args.resize):
        p.error("--centre and --resize read cached tower features: they cannot be combined with --train-tower")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model, processor = loader.load(args.model)
    model.float()
    cfg = model.nvila_config
    configs = {id(c): c for c in (cfg, processor.config, processor.image_processor.nvila_config)}.values()

    def configure(**changes) -> None:
        """Set the same fields on the model's and the processor's configs."""
        for config in configs:
            for name, value in changes.items():
                setattr(config, name, value)

    if args.scales:
        scales = tuple(int(x) for x in args.scales.split(","))
        configure(s2_scales=scales, max_tiles=(scales[-1] // scales[0]) ** 2)  # a square page: the largest scale
    if args.projector:
        configure(projector_type=PROJECTORS[args.projector])
        model.mm_projector = Projector(cfg)  # seeded above: every arm starts from the same weights
    if args.resize:  # the S2 projector still takes the tile's features in every scale slot, as for video frames
        configure(image_aspect_ratio="resize")
    stages = args.curriculum or [(args.questions, args.steps)]
    train_tower = args.train_tower > 0
    start = time.time()
    test_pages = draw_pages(model, processor, args.test_pages, 200, train_tower, args.max_lines)
    rows, cols = token_raster(cfg, test_pages.block)
    firsts, words = shared_tokens(test_pages.scenes, cfg, test_pages.block)
    print(
        f"{rows * cols} image tokens a page ({rows} x {cols}); on the fresh pages {firsts:.1%} of the lines' first "
        f"words share their token with another line's first word, {words:.1%} of the words with another line's",
        flush=True,
    )
    if sum(steps for _, steps in stages) == 0:
        return
    pages = draw_pages(model, processor, args.pages, 100, train_tower, args.max_lines)
    print(f"drew {args.pages} + {args.test_pages} pages in {time.time() - start:.0f} s", flush=True)
    pad = processor.pad_token_id
    tokenizer = processor.tokenizer
    written = {w for scene in pages.scenes + test_pages.scenes for w, _ in documents.text_boxes(scene)}
    token_id = {w: first_token(tokenizer, w) for w in written}

    score = args.score or stages[-1][0]
    order = np.random.default_rng(1)  # the order of the turns of the scored conversations
    at_centre = args.address_centre
    scored_train = conversations(processor, pages, score, args.turns, order, args.share, at_centre)
    test = conversations(processor, test_pages, score, args.turns, order, args.share, at_centre)
    tokens = scored_train[0].input_ids.count(cfg.image_token_id)
    if tokens != rows * cols:
        raise RuntimeError(f"the prompt holds {tokens} image tokens, the raster {rows} x {cols}")
    asked_of = sum(len(c.kinds) for c in scored_train), sum(len(c.kinds) for c in test)
    print(f"{asked_of[0]} train / {asked_of[1]} test questions scored", flush=True)
    if args.centre:
        with torch.no_grad():
            last = model.mm_projector.layers[-1]
            out = model.mm_projector(pages.inputs[:64].float().flatten(0, 1)).flatten(0, 1)
            mean, std = out.mean(0), out.std(0) + 1e-6
            scale = args.centre / ((out - mean) / std).norm(dim=-1).mean() / std
            last.weight.mul_(scale[:, None])
            last.bias.copy_((last.bias - mean) * scale)
    head = list(model.llm.lm_head.parameters())
    rest = [w for n, w in model.llm.named_parameters() if not n.startswith("lm_head")]
    groups = [{"params": head, "lr": args.lr * args.head_lr_ratio}, {"params": rest, "lr": args.lr}]
    groups.append({"params": list(model.mm_projector.parameters()), "lr": args.lr})
    if train_tower:
        groups.append({"params": list(model.vision_tower.parameters()), "lr": args.lr * args.train_tower})
    params = [w for g in groups for w in g["params"]]
    optimizer = torch.optim.AdamW(groups, weight_decay=0.0)

    def word_batch(chats: list[Conversation], p: Pages, ids: torch.Tensor):
        """The word-loss targets of a batch: every word of each conversation's page (title, body) at its token."""
        samples = [
            SceneSample(
                EncodedSample(c.input_ids, c.labels, [], []),
                word_targets(documents.text_boxes(p.scenes[c.page]), PAGE, cfg, p.block, token_id),
            )
            for c in chats
        ]
        return batch_targets(ids, samples, cfg.image_token_id)

    @torch.no_grad()
    def accuracy(scored: list[Conversation], p: Pages) -> str:
        """The share of answers right per kind, over the first conversations that hold 600 questions."""
        model.eval()
        hits: dict[str, list[bool]] = {}
        asked_so_far = np.cumsum([len(c.kinds) for c in scored])
        taken = scored[: int(np.searchsorted(asked_so_far, 600)) + 1]
        size = max(1, 64 // max(args.turns, args.share))
        for s in range(0, len(taken), size):
            chunk = taken[s : s + size]
            out, ids, labels = forward(model, p, chunk, pad, train_tower)
            for c, row in zip(chunk, answered(out, labels)):
                for kind, hit in zip(c.kinds, row):
                    hits.setdefault(kind, []).append(hit)
            if args.word_loss:  # the words named at their tokens, a page per conversation
                targets = word_batch(chunk, p, ids)
                named = word_loss_mean(out.logits, targets)
                if named is not None:
                    hits.setdefault("words", []).extend([named[1]] * len(targets.token_ids))
        model.train()
        return ", ".join(f"{k} {np.mean(hits[k]):.1%}" for k in sorted(hits, key=report_order))

    rng, losses, word_losses = np.random.default_rng(0), [], []
    spec = ReadingSpec(args.number_loss, args.address_loss, args.copy_loss, args.address_layer)
    reading = ReadingLoss(model, spec) if spec.enabled else None
    read_metrics: list[dict[str, float]] = []
    entering: dict[str, torch.Tensor] = {}  # the residual entering --word-layer, from the last forward pass
    early_hits: list[float] = []
    if args.word_layer >= 0:
        model.llm.model.layers[args.word_layer].register_forward_pre_hook(
            lambda module, a, k: entering.update(h=hidden_input(a, k)),
            with_kwargs=True,
        )
    start, step = time.time(), 0
    for kinds, steps in stages:
        train = conversations(processor, pages, kinds, args.turns, rng, args.share, at_centre)
        asked_now = sum(len(c.kinds) for c in train)
        print(f"stage {'+'.join(kinds)}: {steps} steps on {asked_now} questions", flush=True)
        for stage_step in range(1, steps + 1):
            step += 1
            batch = draw_batch(train, args.batch, rng)
            out, ids, labels = forward(model, pages, batch, pad, train_tower)
            loss = out.loss
            placed = [SceneSample(EncodedSample(c.input_ids, c.labels, [], []), answers=c.answers) for c in batch]
            read = (
                reading(place_answers(placed, [(r, 0) for r in range(len(batch))], cfg.image_token_id))
                if reading
                else None
            )
            if read is not None:
                read_metrics.append(read[1])
                loss = loss + read[0]
            if args.word_loss:
                targets = word_batch(batch, pages, ids)
                word, _ = word_loss_mean(out.logits, targets)
                word_losses.append(float(word.detach()))
                loss = loss + args.word_loss * word
                if entering:  # the same words named from the residual entering --word-layer
                    early = model.llm.lm_head(model.llm.model.norm(entering["h"].flatten(0, 1)[targets.positions]))
                    early_loss, hit = naming_loss(early, targets.token_ids)
                    early_hits.append(hit)
                    loss = loss + args.word_loss * early_loss
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            losses.append(float(loss.detach()))
            if step % args.eval_every == 0 or stage_step == steps:
                word_mean = np.mean(word_losses[-50:]) if word_losses else 0.0
                aimed = "".join(
                    f" {label} {np.mean([m[key] for m in read_metrics[-50:] if key in m]):.1%}"
                    for label, key in READ_REPORTS
                    if any(key in m for m in read_metrics[-50:])
                )
                aimed += f" named at layer {args.word_layer} {np.mean(early_hits[-50:]):.1%}" if early_hits else ""
                print(
                    f"step {step} loss {np.mean(losses[-50:]):.3f} word loss {word_mean:.3f}{aimed} | "
                    f"train: {accuracy(scored_train, pages)} | fresh: {accuracy(test, test_pages)} | "
                    f"{time.time() - start:.0f} s",
                    flush=True,
                )
    if args.save:
        model.to(torch.bfloat16)
        print(f"saved {checkpoint.save(model, processor.tokenizer, args.save, overwrite=True)}", flush=True)


if __name__ == "__main__":
    main()
