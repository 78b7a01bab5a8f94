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

KINDS = ("secret", "email", "card", "ip", "phone")
PLACEHOLDER = {kind: f"[{kind.upper()}]" for kind in KINDS}

_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
_HEX = r"[0-9A-Fa-f]{1,4}"

# Python's regex engine has no fast scan for alternations, so each family of patterns runs
# only when a cheap substring test says it could match: most texts skip all of them.
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
_DIGIT_DOT_DIGIT = re.compile(r"[0-9]\.[0-9]")
_IPV6 = re.compile(
    rf"(?<![:\w])(?:{_HEX}:){{7}}{_HEX}(?![:\w])"
    rf"|(?<![:\w])(?:{_HEX}:){{1,6}}:(?:{_HEX}(?::{_HEX}){{0,5}})?(?![:\w])"
)


def luhn_valid(digits: str) -> bool:
    """The Luhn checksum that every payment card number satisfies."""
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = ord(char) - 48
        if index % 2 == 1:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def redact_text(text: str) -> tuple[str, Counter[str]]:
    """``text`` with every PII/secret match replaced, and how many of each kind were found."""
    found: Counter[str] = Counter()

    def fixed(kind: str) -> Callable[[re.Match[str]], str]:
        def replace(match: re.Match[str]) -> str:
            found[kind] += 1
            return PLACEHOLDER[kind]

        return replace

    def numeric(match: re.Match[str]) -> str:
        kind = match.lastgroup
        assert kind is not None
        if kind == "card" and not luhn_valid(re.sub(r"\D", "", match.group())):
            return match.group()
        found[kind] += 1
        return PLACEHOLDER[kind]

    # Secrets first: their values may hold digits or an @ that other patterns would split.
    # Cheap tests gate each family, so most texts never reach a regular expression.
    if max(map(len, text.split()), default=0) >= 14:
        lowered = text.lower()
        if any(hint in lowered for hint in _TOKEN_HINTS):
            text = _TOKEN.sub(fixed("secret"), text)
    if "=" in text or ":" in text:
        lowered = text.lower()
        if any(hint in lowered for hint in _ASSIGNED_HINTS):
            text = _ASSIGNED.sub(fixed("secret"), text)
    if "@" in text:
        text = _EMAIL.sub(fixed("email"), text)
    # A phone number has at least 6 digits, a card 13; an IPv4 address 4 and a digit-dot-digit.
    digits = sum(map(text.count, "0123456789"))
    if digits >= 6 or (digits >= 4 and _DIGIT_DOT_DIGIT.search(text)):
        text = _NUMERIC.sub(numeric, text)
    if "::" in text or text.count(":") >= 7:
        text = _IPV6.sub(fixed("ip"), text)
    return text, found


class Redactor:
    """Caching redactor that keeps running counts of what it replaced."""

    def __init__(self, cache_size: int = 200_000) -> None:
        self.counts: Counter[str] = Counter()
        self._cache: dict[str, tuple[str, Counter[str] | None]] = {}
        self._cache_size = cache_size

    def __call__(self, text: str) -> str:
        hit = self._cache.get(text)
        if hit is None:
            redacted, found = redact_text(text)
            hit = (redacted, found or None)
            if len(self._cache) >= self._cache_size:
                # Cheap bound on memory: start over rather than track recency.
                self._cache.clear()
            self._cache[text] = hit
        if hit[1] is not None:
            self.counts.update(hit[1])
        return hit[0]

    @property
    def total(self) -> int:
        return sum(self.counts.values())
