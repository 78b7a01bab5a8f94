"""Redaction: every PII kind, the Luhn check, and properties over generated inputs."""

from __future__ import annotations

from collections import Counter
from functools import partial

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from rewardops_trainer.telemetry import redact as redact_module
from rewardops_trainer.telemetry.redact import Redactor, luhn_valid, redact_text


@pytest.mark.parametrize(
    ("text", "kind", "secret"),
    [
        (
            "write to jane.doe+tag@mail.example.co.uk today",
            "email",
            "jane.doe+tag@mail.example.co.uk",
        ),
        ("call +1 415-555-0132 now", "phone", "415-555-0132"),
        ("call (415) 555-0132 now", "phone", "555-0132"),
        ("call 415.555.0132 now", "phone", "415.555.0132"),
        ("card 4111 1111 1111 1111 thanks", "card", "4111 1111 1111 1111"),
        ("card 5500-0000-0000-0004 thanks", "card", "5500-0000-0000-0004"),
        ("from 192.168.10.20.", "ip", "192.168.10.20"),
        ("from 2001:db8::ff00:42:8329 today", "ip", "2001:db8::ff00:42:8329"),
        ("from fe80:0:0:0:202:b3ff:fe1e:8329 today", "ip", "fe80:0:0:0:202:b3ff:fe1e:8329"),
        ("key sk-live-abcdefghijklmnop1234 here", "secret", "abcdefghijklmnop1234"),
        ("aws AKIAABCDEFGHIJKLMNOP here", "secret", "AKIAABCDEFGHIJKLMNOP"),
        ("gh ghp_abcdefghijklmnopqrstuvwxyz0123 here", "secret", "ghp_abcdefghij"),
        (
            "Authorization: Bearer abcdefghijklmnopqrstuvwxyz012345",
            "secret",
            "abcdefghijklmnopqrst",
        ),
        ("config api_key=s3cr3t-value-123 ok", "secret", "s3cr3t-value-123"),
        ("PASSWORD: hunter2hunter2", "secret", "hunter2hunter2"),
    ],
)
def test_each_kind_is_redacted(text: str, kind: str, secret: str) -> None:
    redacted, found = redact_text(text)
    assert secret not in redacted
    assert f"[{kind.upper()}]" in redacted
    assert found[kind] >= 1


@pytest.mark.parametrize(
    "text",
    [
        "order 12345678 ships in 3 to 5 days",
        "card 4111 1111 1111 1112 fails the Luhn check",
        "version 1.2.3 and 10:30 on 2026-01-02",
        "a keyboard is not a secret, nor is the token economy",
    ],
)
def test_lookalikes_survive(text: str) -> None:
    assert redact_text(text) == (text, {})


def luhn_complete(body: str) -> str:
    for check in "0123456789":
        if luhn_valid(body + check):
            return body + check
    raise AssertionError("some check digit always completes a Luhn number")


@given(st.text(alphabet="0123456789", min_size=12, max_size=18), st.sampled_from(["", " ", "-"]))
def test_every_luhn_valid_card_is_redacted(body: str, separator: str) -> None:
    digits = luhn_complete(body)
    grouped = separator.join(digits[i : i + 4] for i in range(0, len(digits), 4))
    redacted, found = redact_text(f"pay with {grouped} please")
    assert redacted == "pay with [CARD] please"
    assert found == {"card": 1}


@given(st.text(alphabet="0123456789", min_size=13, max_size=19))
def test_a_digit_run_is_a_card_exactly_when_luhn_valid(digits: str) -> None:
    redacted, _ = redact_text(f"number {digits} end")
    assert ("[CARD]" in redacted) == luhn_valid(digits)


emails = st.builds(
    "{}@{}.{}".format,
    st.from_regex(r"[a-z][a-z0-9._+-]{0,15}", fullmatch=True),
    st.from_regex(r"[a-z][a-z0-9-]{0,10}", fullmatch=True),
    st.sampled_from(["com", "org", "io", "co.uk"]),
)


@given(emails, st.text(alphabet=st.characters(categories=["L", "Zs"]), max_size=30))
def test_emails_never_survive(email: str, filler: str) -> None:
    redacted, found = redact_text(f"{filler} {email} {filler}")
    assert email not in redacted
    assert found["email"] == 1


@given(st.lists(st.integers(0, 255), min_size=4, max_size=4))
def test_ipv4_never_survives(octets: list[int]) -> None:
    address = ".".join(map(str, octets))
    redacted, found = redact_text(f"client {address} connected")
    assert redacted == "client [IP] connected"
    assert found == {"ip": 1}


@settings(max_examples=200)
@given(st.text(max_size=200))
def test_redaction_is_idempotent(text: str) -> None:
    once, _ = redact_text(text)
    twice, found = redact_text(once)
    assert twice == once
    assert not found


@given(
    st.text(
        alphabet=st.characters(categories=["L", "Zs", "Po"], exclude_characters=":=@"), max_size=100
    )
)
def test_text_without_digits_at_or_secrets_is_unchanged(text: str) -> None:
    if any(
        word.lower().startswith(("sk", "pk", "rk", "akia", "gh", "xox", "aiza"))
        for word in text.split()
    ):
        return
    assert redact_text(text)[0] == text


def test_redactor_counts_every_occurrence_even_when_cached() -> None:
    redact = Redactor(cache_size=2)
    texts = ["mail a@example.com", "call 415-555-0132", "mail a@example.com", "plain", "x@y.io"]
    out = [redact(text) for text in texts]
    assert out == ["mail [EMAIL]", "call [PHONE]", "mail [EMAIL]", "plain", "[EMAIL]"]
    assert redact.counts == {"email": 3, "phone": 1}
    assert redact.total == 4


samples = st.sampled_from(
    [
        "plain words",
        "mail a@example.com",
        "call +1 415-555-0132",
        "card 4111 1111 1111 1111",
        "key sk-live-abcdefghijklmnop1234",
        "order 12345 of v1.2",
        "",
    ]
)


@given(st.lists(samples, max_size=30), st.integers(1, 4))
def test_the_caching_redactor_agrees_with_redact_text(texts: list[str], cache_size: int) -> None:
    # Small caches: texts fall out of the cache (clean set included) and come back.
    redact = Redactor(cache_size=cache_size)
    expected: Counter[str] = Counter()
    for text in texts:
        redacted, found = redact_text(text)
        assert redact(text) == redacted
        assert (text in redact.clean) <= (redacted == text)
        expected.update(found)
    assert redact.counts == expected


@pytest.mark.parametrize(
    "text",
    [
        "send it with Bearer abcdefghijklmnopqrstuvwxyz0123 please",
        "BEARER abcdefghijklmnopqrstuvwxyz0123",
    ],
)
def test_a_bearer_token_is_a_secret_without_any_colon_or_equals(text: str) -> None:
    redacted, found = redact_text(text)
    assert "abcdefghijklmnopqrstuvwxyz0123" not in redacted
    assert found["secret"] == 1


def test_numbers_in_other_scripts_are_redacted_like_ascii_ones() -> None:
    # Arabic-Indic digits: a US phone number and a Luhn-valid card (4111 1111 1111 1111).
    arabic = str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")
    phone = "555-123-4567".translate(arabic)
    card = "4111 1111 1111 1111".translate(arabic)
    redacted, found = redact_text(f"call {phone} or pay with {card}")
    assert phone not in redacted
    assert card not in redacted
    assert (found["phone"], found["card"]) == (1, 1)


def run_every_pattern(text: str) -> tuple[str, Counter[str]]:
    """Every pattern family on every text, in the order redaction runs them: the cheap tests
    that let most texts skip a family must only skip where it would change nothing."""
    found: dict[str, int] = {}
    fixed, numeric = redact_module._replace_fixed, redact_module._replace_numeric
    for pattern, replace in (
        (redact_module._TOKEN, partial(fixed, found, "secret")),
        (redact_module._ASSIGNED, partial(fixed, found, "secret")),
        (redact_module._EMAIL, partial(fixed, found, "email")),
        (redact_module._NUMERIC, partial(numeric, found)),
        (redact_module._IPV6, partial(fixed, found, "ip")),
    ):
        text = pattern.sub(replace, text)
    return text, Counter(found)


ARABIC_DIGITS = {ord("0") + digit: 0x0660 + digit for digit in range(10)}
# Pieces of every kind, near misses of each test, and their placeholders, in ASCII and not.
fragments = st.sampled_from(
    [
        "sk-live-abcdefghijklmnop1234",
        "pk_test_ABCDEFGHIJKLMNOP",
        "AKIAABCDEFGHIJKLMNOP",
        "akiaabcdefghijklmnop",
        "ghp_abcdefghijklmnopqrstuvwxyz0123",
        "xoxb-1234567890abc",
        "AIza" + "x" * 35,
        "Bearer abcdefghijklmnopqrstuvwxyz012345",
        "api_key=s3cr3t-value-123",
        "PASSWORD: hunter2hunter2",
        "token: abcdef",
        "a@b.co",
        "jane.doe+tag@mail.example.co.uk",
        "4111 1111 1111 1111",
        "5500-0000-0000-0004",
        "4111111111111111",
        "4222222222222",
        "192.168.10.20",
        "1.2.3.4",
        "2001:db8::ff00:42:8329",
        "fe80:0:0:0:202:b3ff:fe1e:8329",
        "+1 415-555-0132",
        "(415) 555-0132",
        "+44 20 7946 0958",
        "415.555.0132",
        "415-555-0132",
        # Arabic-Indic digits
        "415-555-0132".translate(ARABIC_DIGITS),
        "4111 1111 1111 1111".translate(ARABIC_DIGITS),
        "order 12345678",
        "v1.2.3",
        "10:30",
        "é",
        "\x1f",
        "x" * 20,
        "[SECRET]",
        "[PHONE]",
    ]
)
pieces = fragments | st.text(alphabet="0123456789 .-+():@=_abkKsSxeAIz\u0663", max_size=20)


@settings(max_examples=500)
@given(st.lists(pieces, max_size=5), st.sampled_from(["", " ", "-", ".", ":", "="]))
# Each family at the edge of its test, in ASCII and not: a 13-digit card, a phone number
# whose only sign is its "+", an IPv4 address of 4 digits, a "::" address.
@example(["card", "4222222222222"], " ")
@example(["call", "+44 20 7946 0958"], " ")
@example(["é", "1.2.3.4"], " ")
@example(["é", "4222222222222"], " ")
@example(["é", "+44 20 7946 0958"], " ")
@example(["é", "fe80::1"], " ")
def test_the_cheap_tests_change_no_result(parts: list[str], separator: str) -> None:
    text = separator.join(parts)
    assert redact_text(text) == run_every_pattern(text)
