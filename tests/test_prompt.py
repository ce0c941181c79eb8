"""nvila.prompt.single_turns: a multi-question conversation as one single-turn conversation per question;
nvila.prompt.inline_media: the first question's leading media straight before its text."""

from __future__ import annotations

import pytest

from nvila.prompt import inline_media, single_turns, user_turn


def msg(role: str, content: str) -> dict[str, str]:
    return {"role": role, "content": content}


def test_each_question_gets_the_system_prompt_and_the_leading_media():
    messages = [
        msg("system", "Be brief."),
        msg("user", "<image>\n<image>\nWhat is left?"),
        msg("assistant", "a cat"),
        msg("user", "And right?"),
        msg("assistant", "a dog"),
    ]
    assert single_turns(messages) == [
        [msg("system", "Be brief."), msg("user", "<image>\n<image>\nWhat is left?"), msg("assistant", "a cat")],
        [msg("system", "Be brief."), msg("user", "<image>\n<image>\nAnd right?"), msg("assistant", "a dog")],
    ]
    # media placed by default (no placeholder) stay placed by default in every question
    plain = [msg("user", "A?"), msg("assistant", "a"), msg("user", "B?"), msg("assistant", "b")]
    assert single_turns(plain) == [plain[:2], plain[2:]]


@pytest.mark.parametrize(
    "messages",
    [
        [msg("user", "<image>\nA?"), msg("assistant", "a")],  # one question: nothing to split
        [msg("user", "<image>\nA?"), msg("assistant", "a"), msg("user", "B?")],  # no answer to the last
        [msg("user", "A?"), msg("user", "B?"), msg("assistant", "a"), msg("assistant", "b")],  # not alternating
        [msg("user", "<image>\nA?"), msg("assistant", "a"), msg("user", "<image>\nB?"), msg("assistant", "b")],
        [msg("user", "Look at <image> now"), msg("assistant", "a"), msg("user", "B?"), msg("assistant", "b")],
    ],
)
def test_conversations_that_cannot_be_split_give_none(messages):
    assert single_turns(messages) is None


def test_inline_media_puts_the_leading_media_straight_before_the_first_question():
    messages = [
        msg("system", "Be brief.\n"),
        msg("user", "<image>\n<image> \nWhat is left?\nSay it."),
        msg("assistant", "a cat"),
        msg("user", "<image>\nAnd right?"),
    ]
    inlined = inline_media(messages)
    assert inlined == [messages[0], msg("user", "<image><image>What is left?\nSay it."), *messages[2:]]
    assert messages[1]["content"] == "<image>\n<image> \nWhat is left?\nSay it."  # the input is not changed
    # the form a prompt without placeholders is asked in (media before the text)
    assert inline_media([msg("user", "<image>\nWhat?")])[0]["content"] == user_turn("What?", 1)
    assert inline_media([msg("user", "<vila/video>\nWhen?")])[0]["content"] == user_turn("When?", 0, 1)
    plain = [msg("user", "What is <image> here?"), msg("assistant", "a")]
    assert inline_media(plain) == plain  # no leading media: unchanged
