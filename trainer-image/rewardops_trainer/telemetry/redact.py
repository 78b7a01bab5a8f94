"""PII and secret redaction, applied to every text before anything is written (spill included).

Regular expressions find API-key-like secrets, e-mail addresses, payment card numbers (only
when the Luhn check passes, so order numbers survive), IPv4/IPv6 addresses and phone numbers;
each becomes a placeholder such as ``[EMAIL]``. Telemetry repeats the same prompt and response
texts many times, so results are cached (bounded).
"""

from __future__ import annotations

import re
from collections import Counter
from functools import partial

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
_DIGIT_DOT_DIGIT = re.compile(r"\d\.\d")
_ASCII_DIGITS = b"0123456789"
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
    return redacted, found if found is not None else Counter()


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


def _has_hint(text: str, hints: tuple[str, ...]) -> bool:
    lowered = text.lower()
    return any(hint in lowered for hint in hints)


def _redact(text: str) -> tuple[str, Counter[str] | None]:
    """:func:`redact_text`, with None for nothing found: most texts, and a Counter costs."""
    found: dict[str, int] = {}
    # Secrets first: their values may hold digits or an @ that other patterns would split.
    # Cheap tests gate each family, so most texts never reach a regular expression. Every
    # token pattern needs a "-", a "_", "AKIA" or "AIza", which is cheaper to look for than
    # the long word it also needs.
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
    # A phone number has at least 6 digits, a card 13; an IPv4 address 4 and a digit-dot-digit.
    # In ASCII text the digits are counted in one C pass over the bytes (str.count took ten).
    if text.isascii():
        encoded = text.encode("ascii")
        digits = len(encoded) - len(encoded.translate(None, _ASCII_DIGITS))
    else:
        # \d matches every Unicode decimal digit (e.g. Arabic-Indic); so must the count.
        digits = sum(char.isdecimal() for char in text)
    if digits >= 6 or (digits >= 4 and _DIGIT_DOT_DIGIT.search(text)):
        text = _NUMERIC.sub(partial(_replace_numeric, found), text)
    if "::" in text or text.count(":") >= 7:
        text = _IPV6.sub(partial(_replace_fixed, found, "ip"), text)
    return text, Counter(found) if found else None


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
        self._found: dict[str, tuple[str, Counter[str]]] = {}
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
        self.counts.update(hit[1])
        return hit[0]

    @property
    def total(self) -> int:
        return sum(self.counts.values())
