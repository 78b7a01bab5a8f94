"""PII and secret redaction, applied to every text before anything is written (spill included).

One combined regular expression finds e-mail addresses, API-key-like secrets, payment card
numbers (kept only when the Luhn check passes, so order numbers survive), IPv4/IPv6 addresses
and phone numbers; each becomes a placeholder such as ``[EMAIL]``. Telemetry repeats the same
prompt and response texts many times, so results are cached (bounded).
"""

from __future__ import annotations

import re
from collections import Counter

KINDS = ("secret", "email", "card", "ip", "phone")
PLACEHOLDER = {kind: f"[{kind.upper()}]" for kind in KINDS}

_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
_HEX = r"[0-9A-Fa-f]{1,4}"
_PATTERN = re.compile(
    "|".join(
        [
            # Order matters: the first alternative that matches at a position wins.
            r"(?P<secret>"
            r"\b(?:sk|pk|rk)[-_](?:live[-_]|test[-_]|proj[-_])?[A-Za-z0-9]{16,}"
            r"|\bAKIA[0-9A-Z]{16}\b"
            r"|\bgh[pousr]_[A-Za-z0-9]{20,}"
            r"|\bxox[abprs]-[A-Za-z0-9-]{10,}"
            r"|\bAIza[0-9A-Za-z_-]{35}"
            r"|(?i:\bbearer\s+)[A-Za-z0-9._~+/-]{20,}=*"
            r"|(?i:\b(?:api[_-]?key|secret|token|password|passwd)\s*[:=]\s*)[^\s,;\"']{6,}"
            r")",
            r"(?P<email>\b[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b)",
            r"(?P<card>(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d-]))",
            rf"(?P<ip>(?<![\d.]){_OCTET}(?:\.{_OCTET}){{3}}(?![\d.])"
            rf"|(?<![:\w])(?:{_HEX}:){{7}}{_HEX}(?![:\w])"
            rf"|(?<![:\w])(?:{_HEX}:){{1,6}}:(?:{_HEX}(?::{_HEX}){{0,5}})?(?![:\w]))",
            r"(?P<phone>(?<![\w+])(?:"
            r"\+\d{1,3}[ .-]?(?:\(\d{1,4}\)|\d{1,4})(?:[ .-]?\d{2,4}){2,4}"
            r"|\(\d{3}\)[ .-]?\d{3}[ .-]?\d{4}"
            r"|\d{3}[.-]\d{3}[.-]\d{4}"
            r")(?!\w))",
        ]
    )
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

    def replace(match: re.Match[str]) -> str:
        kind = match.lastgroup
        assert kind is not None
        if kind == "card":
            digits = re.sub(r"\D", "", match.group())
            if not luhn_valid(digits):
                return match.group()
        found[kind] += 1
        return PLACEHOLDER[kind]

    return _PATTERN.sub(replace, text), found


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
