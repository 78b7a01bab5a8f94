from __future__ import annotations

import pytest

from rewardops_trainer.serve.limits import (
    Limits,
    RequestError,
    parse_json_object,
    reject_unknown,
    require_text,
    require_texts,
)

LIMITS = Limits(max_body_bytes=1000, max_responses=3, max_chars=10)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b'{"prompt": ', "invalid JSON at line 1"),
        (b"\xff\xfe", "not UTF-8"),
        (b"[1, 2]", "expected a JSON object, got a list"),
        (b'"text"', "got a string"),
        (b"null", "got null"),
    ],
)
def test_bad_bodies_are_400_on_body(raw: bytes, expected: str) -> None:
    with pytest.raises(RequestError) as caught:
        parse_json_object(raw)
    assert caught.value.status == 400
    assert caught.value.field == "body"
    assert expected in caught.value.message


def test_a_json_object_parses() -> None:
    assert parse_json_object(b'{"prompt": "p"}') == {"prompt": "p"}


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({}, 422, "required"),
        ({"prompt": 3}, 422, "expected a string, got a number"),
        ({"prompt": ["a"]}, 422, "got a list"),
        ({"prompt": "x" * 11}, 413, "11 characters is over the limit of 10"),
    ],
)
def test_text_fields_name_themselves(body: dict[str, object], status: int, message: str) -> None:
    with pytest.raises(RequestError) as caught:
        require_text(body, "prompt", LIMITS)
    assert (caught.value.status, caught.value.field) == (status, "prompt")
    assert message in caught.value.message


def test_text_at_the_limit_passes() -> None:
    assert require_text({"prompt": "x" * 10}, "prompt", LIMITS) == "x" * 10


@pytest.mark.parametrize(
    ("value", "status", "field", "message"),
    [
        (None, 422, "responses", "required"),
        ("a", 422, "responses", "expected a list of strings, got a string"),
        ([], 422, "responses", "must not be empty"),
        (["a"] * 4, 413, "responses", "4 items is over the limit of 3"),
        (["a", 2], 422, "responses[1]", "expected a string"),
        (["a", "b", "y" * 11], 413, "responses[2]", "over the limit of 10"),
    ],
)
def test_list_fields_name_the_item(value: object, status: int, field: str, message: str) -> None:
    with pytest.raises(RequestError) as caught:
        require_texts({"responses": value}, "responses", LIMITS)
    assert (caught.value.status, caught.value.field) == (status, field)
    assert message in caught.value.message


def test_unknown_fields_are_rejected_by_name() -> None:
    with pytest.raises(RequestError) as caught:
        reject_unknown({"prompt": "p", "respones": "r"}, {"prompt", "response"})
    assert caught.value.field == "respones"
    assert caught.value.body() == {"error": caught.value.message, "field": "respones"}
    reject_unknown({"prompt": "p"}, {"prompt", "response"})


def test_limits_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_responses"):
        Limits(max_responses=0)
