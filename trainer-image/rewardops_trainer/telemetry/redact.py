"""PII and secret redaction, applied to every text before anything is written (spill included).

Regular expressions find API-key-like secrets, e-mail addresses, payment card numbers (only
when the Luhn check passes, so order numbers survive), IPv4/IPv6 addresses and phone numbers;
each becomes a placeholder such as ``[EMAIL]``. Telemetry repeats the same prompt and response
texts many times, so results are cached (bounded).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from functools import partial

KINDS = ("secret", "email", "card", "ip", "phone")
PLACEHOLDER = {kind: f"[{kind.upper()}]" for kind in KINDS}

_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
_HEX = r"[0-9A-Fa-f]{1,4}"

_TOKEN = re.compile(
    r"\b(?:sk|pk|rk)[-_](?:live[-_]|test[-_]|proj[-_])?[A-Za-z0-9]{16,}"
    r"|\bAKIA[0-9A-Z]{16}\b"
    r"|\bgh[pousr]_[A-Za-z0-9]{20,}"
    r"|\bxox[abprs]-[A-Za-z0-9-]{10,}"
    r"|\bAIza[0-9A-Za-z_-]{35}"
)
_TOKEN_HINTS = ("sk-", "sk_", "pk-", "pk_", "rk-", "rk_", "akia", "gh", "xox", "aiza")
_ASSIGNED = re.compile(
    r"(?i:\bbearer\s+)[A-Za-z0-9._~+/-]{20,}=*"
    r"|(?i:\b(?:api[_-]?key|secret|token|password|passwd)\s*[:=]\s*)[^\s,;\"']{6,}"
)
_ASSIGNED_HINTS = ("bearer", "key", "secret", "token", "passw")
_EMAIL = re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b")
_NUMERIC = re.compile(
    # The lookahead lets the engine skip every position that cannot start a number.
    r"(?=[\d+(])(?:"
    r"(?P<card>(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d-]))"
    rf"|(?P<ip>(?<![\d.]){_OCTET}(?:\.{_OCTET}){{3}}(?!\.?\d))"
    r"|(?P<phone>(?<![\w+])(?:"
    r"\+\d{1,3}[ .-]?(?:\(\d{1,4}\)|\d{1,4})(?:[ .-]?\d{2,4}){2,4}"
    r"|\(\d{3}\)[ .-]?\d{3}[ .-]?\d{4}"
    r"|\d{3}[.-]\d{3}[.-]\d{4}"
    r")(?!\w)))"
)
_DIGIT_DOT_DIGIT = re.compile(r"\d\.\d")
_IPV6 = re.compile(
    rf"(?<![:\w])(?:{_HEX}:){{7}}{_HEX}(?![:\w])"
    rf"|(?<![:\w])(?:{_HEX}:){{1,6}}:(?:{_HEX}(?::{_HEX}){{0,5}})?(?![:\w])"
)


def luhn_valid(digits: str) -> bool:
    """The Luhn checksum that every payment card number satisfies."""
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char)  # any Unicode decimal digit, as \d matched it
        if index % 2 == 1:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def redact_text(text: str) -> tuple[str, Counter[str]]:
    """``text`` with every PII/secret match replaced, and how many of each kind were found."""
    redacted, found = _redact(text)
    return redacted, Counter(found)


def _replace_fixed(found: dict[str, int], kind: str, match: re.Match[str]) -> str:
    found[kind] = found.get(kind, 0) + 1
    return PLACEHOLDER[kind]


def _replace_numeric(found: dict[str, int], match: re.Match[str]) -> str:
    kind = match.lastgroup
    assert kind is not None
    if kind == "card" and not luhn_valid(re.sub(r"\D", "", match.group())):
        return match.group()
    found[kind] = found.get(kind, 0) + 1
    return PLACEHOLDER[kind]


# Python's regex engine has no fast scan for alternations, so each family of patterns runs
# only when cheap substring tests say it could match: most texts skip all of them. Each test
# below needs only what every pattern of its family needs, so skipping changes no result
# (tests/unit/test_telemetry_redact.py checks this against the patterns run unconditionally).
#
# ASCII text is first folded in one C pass, letters to lower case and digits to "0", so that
# each test is a plain substring search (on a str: ``bytes.__contains__`` first tries its
# argument as an integer, and the failed try costs more than the search).
_FOLD = bytes.maketrans(
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", b"abcdefghijklmnopqrstuvwxyz0000000000"
)


def _fold(text: str) -> str:
    return text.encode("ascii").translate(_FOLD).decode("ascii")


def _redact(text: str) -> tuple[str, dict[str, int] | None]:
    """:func:`redact_text`, with a plain dict of the kinds found, None for none (most texts)."""
    if not text.isascii():
        return _redact_unicode(text)
    found: dict[str, int] = {}
    folded = _fold(text)
    # Secrets first: their values may hold digits or an @ that other patterns would split.
    # Every token needs a "-", a "_", "AKIA" or "AIza", a hint and a long word.
    if (
        ("-" in folded or "_" in folded or "akia" in folded or "aiza" in folded)
        and any(hint in folded for hint in _TOKEN_HINTS)
        and max(map(len, folded.split()), default=0) >= 14
    ):
        text, folded = _substitute(_TOKEN, partial(_replace_fixed, found, "secret"), text, folded)
    if ("=" in folded or ":" in folded or "bearer" in folded) and any(
        hint in folded for hint in _ASSIGNED_HINTS
    ):
        text, folded = _substitute(
            _ASSIGNED, partial(_replace_fixed, found, "secret"), text, folded
        )
    if "@" in folded:
        text, folded = _substitute(_EMAIL, partial(_replace_fixed, found, "email"), text, folded)
    # A card has 13 digits; an IPv4 address a digit, a "." and a digit; a phone number 6
    # digits and a "+" or "(" before a digit, or a digit, "." or "-" and a digit.
    digits = folded.count("0")
    if digits >= 4 and (
        digits >= 13
        or "0.0" in folded
        or (digits >= 6 and ("0-0" in folded or "+0" in folded or "(0" in folded))
    ):
        text, folded = _substitute(_NUMERIC, partial(_replace_numeric, found), text, folded)
    if "::" in folded or folded.count(":") >= 7:
        text = _IPV6.sub(partial(_replace_fixed, found, "ip"), text)
    return text, found or None


def _substitute(
    pattern: re.Pattern[str], replace: Callable[[re.Match[str]], str], text: str, folded: str
) -> tuple[str, str]:
    """(text, folded text) after ``pattern.sub``: the later tests read the changed text."""
    changed = pattern.sub(replace, text)
    return (text, folded) if changed == text else (changed, _fold(changed))


def _has_hint(text: str, hints: tuple[str, ...]) -> bool:
    lowered = text.lower()
    return any(hint in lowered for hint in hints)


def _redact_unicode(text: str) -> tuple[str, dict[str, int] | None]:
    """:func:`_redact` for text that is not ASCII, with the same tests on the text itself."""
    found: dict[str, int] = {}
    if (
        ("-" in text or "_" in text or "AKIA" in text or "AIza" in text)
        and max(map(len, text.split()), default=0) >= 14
        and _has_hint(text, _TOKEN_HINTS)
    ):
        text = _TOKEN.sub(partial(_replace_fixed, found, "secret"), text)
    if _has_hint(text, _ASSIGNED_HINTS) and (
        "=" in text or ":" in text or "bearer" in text.lower()
    ):
        text = _ASSIGNED.sub(partial(_replace_fixed, found, "secret"), text)
    if "@" in text:
        text = _EMAIL.sub(partial(_replace_fixed, found, "email"), text)
    # \d matches every Unicode decimal digit (e.g. Arabic-Indic); so must the count.
    digits = sum(char.isdecimal() for char in text)
    if digits >= 6 or (digits >= 4 and _DIGIT_DOT_DIGIT.search(text)):
        text = _NUMERIC.sub(partial(_replace_numeric, found), text)
    if "::" in text or text.count(":") >= 7:
        text = _IPV6.sub(partial(_replace_fixed, found, "ip"), text)
    return text, found or None


class Redactor:
    """Caching redactor that keeps running counts of what it replaced.

    Most texts hold nothing to redact and repeat: they go into :attr:`clean`, which a hot
    loop may test before calling (``text if text in redact.clean else redact(text)``).
    """

    def __init__(self, cache_size: int = 200_000) -> None:
        self.counts: Counter[str] = Counter()
        #: texts known to hold nothing to redact
        self.clean: set[str] = set()
        #: text -> (redacted text, kinds found) for the others
        self._found: dict[str, tuple[str, dict[str, int]]] = {}
        self._cache_size = cache_size

    def __call__(self, text: str) -> str:
        if text in self.clean:
            return text
        hit = self._found.get(text)
        if hit is None:
            redacted, found = _redact(text)
            if len(self.clean) + len(self._found) >= self._cache_size:
                # Cheap bound on memory: start over rather than track recency.
                self.clean.clear()
                self._found.clear()
            if found is None:
                self.clean.add(text)
                return text
            hit = self._found[text] = (redacted, found)
        counts = self.counts
        for kind, number in hit[1].items():
            counts[kind] += number
        return hit[0]

    @property
    def total(self) -> int:
        return sum(self.counts.values())
