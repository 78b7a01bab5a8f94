"""Pair rules: how the feedback on one prompt becomes (chosen, rejected) preference pairs.

Every rule has its own weight (how much the trainer trusts it) and margin (how far apart the
two rewards should be); docs/telemetry.md documents each. Rules run in priority order; per
prompt, pairs are de-duplicated, pairs with identical or over-long texts are dropped, and at
most ``max_pairs_per_prompt`` are kept, highest-priority rules first.
"""

from __future__ import annotations

import zlib
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple


class Interaction(NamedTuple):
    """The part of an event the rules need (redacted; no user id): one spilled row."""

    prompt_id: str
    prompt: str
    session_id: str
    response_id: str
    response: str
    thumb: str | None
    rating: int | None
    other_response_id: str | None
    other_response: str | None
    choice: str | None
    correction: str | None
    regenerated: bool
    accepted: bool
    dwell_ms: int | None
    copied: bool
    reported_wrong: bool


@dataclass(frozen=True)
class Rule:
    name: str
    weight: float
    #: The margin of every pair of the rule; ``rating`` scales it by the rating gap.
    margin: float
    summary: str


#: (chosen text, rejected text, margin)
Candidate = tuple[str, str, float]


@dataclass(frozen=True)
class Pair:
    prompt_id: str
    prompt: str
    chosen: str
    rejected: str
    weight: float
    margin: float
    rule: str

    def to_row(self) -> dict[str, object]:
        return {
            "prompt": self.prompt,
            "chosen": self.chosen,
            "rejected": self.rejected,
            "weight": self.weight,
            "margin": self.margin,
            "rule": self.rule,
            "prompt_id": self.prompt_id,
        }


@dataclass(frozen=True)
class RuleSettings:
    max_pairs_per_prompt: int
    max_text_chars: int
    dwell_threshold_ms: int
    #: Minimum mean-rating gap for a rating pair.
    rating_gap: float = 2.0


def _texts(group: Sequence[Interaction]) -> dict[str, str]:
    texts: dict[str, str] = {}
    for event in group:
        texts.setdefault(event.response_id, event.response)
    return texts


def _net_thumbs(group: Sequence[Interaction]) -> Counter[str]:
    votes: Counter[str] = Counter()
    for event in group:
        if event.thumb == "up":
            votes[event.response_id] += 1
        elif event.thumb == "down":
            votes[event.response_id] -= 1
    return votes


def comparison(group: Sequence[Interaction], settings: RuleSettings) -> list[Candidate]:
    out: list[Candidate] = []
    for event in group:
        if event.other_response is None:
            continue
        if event.choice == "this":
            out.append((event.response, event.other_response, 1.0))
        else:
            out.append((event.other_response, event.response, 1.0))
    return out


def correction(group: Sequence[Interaction], settings: RuleSettings) -> list[Candidate]:
    return [(e.correction, e.response, 1.0) for e in group if e.correction and e.correction.strip()]


def thumbs(group: Sequence[Interaction], settings: RuleSettings) -> list[Candidate]:
    texts, votes = _texts(group), _net_thumbs(group)
    ups = [rid for rid, net in votes.items() if net > 0]
    downs = [rid for rid, net in votes.items() if net < 0]
    return [(texts[up], texts[down], 0.5) for up in ups for down in downs]


def reported_wrong(group: Sequence[Interaction], settings: RuleSettings) -> list[Candidate]:
    texts, votes = _texts(group), _net_thumbs(group)
    reported = {e.response_id for e in group if e.reported_wrong}
    if not reported:
        return []
    clean = [rid for rid in texts if rid not in reported and votes[rid] >= 0]
    return [(texts[good], texts[bad], 0.5) for good in clean for bad in sorted(reported)]


def rating(group: Sequence[Interaction], settings: RuleSettings) -> list[Candidate]:
    texts = _texts(group)
    ratings: defaultdict[str, list[int]] = defaultdict(list)
    for event in group:
        if event.rating is not None:
            ratings[event.response_id].append(event.rating)
    means = {rid: sum(values) / len(values) for rid, values in ratings.items()}
    return [
        (texts[a], texts[b], min(1.0, (means[a] - means[b]) / 4))
        for a in means
        for b in means
        if means[a] - means[b] >= settings.rating_gap
    ]


def regeneration(group: Sequence[Interaction], settings: RuleSettings) -> list[Candidate]:
    texts = _texts(group)
    accepted: defaultdict[str, set[str]] = defaultdict(set)
    regenerated: defaultdict[str, set[str]] = defaultdict(set)
    for event in group:
        if event.regenerated:
            regenerated[event.session_id].add(event.response_id)
        elif event.accepted:
            accepted[event.session_id].add(event.response_id)
    return [
        (texts[good], texts[bad], 0.3)
        for session, goods in accepted.items()
        for good in sorted(goods)
        for bad in sorted(regenerated.get(session, ()))
        if good != bad
    ]


def implicit(group: Sequence[Interaction], settings: RuleSettings) -> list[Candidate]:
    texts = _texts(group)
    dwell: dict[str, int] = {}
    copied: set[str] = set()
    reported: set[str] = set()
    for event in group:
        if event.dwell_ms is not None:
            dwell[event.response_id] = max(dwell.get(event.response_id, 0), event.dwell_ms)
        if event.copied:
            copied.add(event.response_id)
        if event.reported_wrong:
            reported.add(event.response_id)
    threshold = settings.dwell_threshold_ms
    out: list[Candidate] = []
    for a in dwell:
        if a in reported:
            continue
        for b in dwell:
            if a == b:
                continue
            by_copy = a in copied and b not in copied
            against_copy = b in copied and a not in copied
            by_dwell = dwell[a] - dwell[b] >= threshold
            against_dwell = dwell[b] - dwell[a] >= threshold
            # Both signals must agree or one must be silent: a weak signal never overrides.
            if (by_copy and not against_dwell) or (by_dwell and not against_copy):
                out.append((texts[a], texts[b], 0.1))
    return out


RuleFunction = Callable[[Sequence[Interaction], RuleSettings], list[Candidate]]

#: In priority order: when a prompt has more pairs than its cap, earlier rules win.
RULES: tuple[tuple[Rule, RuleFunction], ...] = (
    (Rule("comparison", 1.0, 1.0, "A-vs-B choice: the chosen response beats the other"), comparison),
    (Rule("correction", 1.0, 1.0, "the user's correction beats the original response"), correction),
    (Rule("thumbs", 0.8, 0.5, "net thumbs-up response beats net thumbs-down response"), thumbs),
    (
        Rule("reported_wrong", 0.7, 0.5, "an unreported response beats one reported wrong"),
        reported_wrong,
    ),
    (Rule("rating", 0.6, 0.25, "mean rating higher by >= 2 stars wins; margin = gap / 4"), rating),
    (
        Rule("regeneration", 0.6, 0.3, "the accepted response beats the ones regenerated"),
        regeneration,
    ),
    (Rule("implicit", 0.2, 0.1, "copied or longer-dwelt (by the threshold) response wins"), implicit),
)
RULE_NAMES = tuple(rule.name for rule, _ in RULES)


def _normal(text: str) -> str:
    return " ".join(text.split())


def _order(candidate: Candidate) -> int:
    # A fixed, content-based order inside a rule, so the cap does not favour the first logged.
    return zlib.crc32(f"{candidate[0]}\x00{candidate[1]}".encode())


def select_pairs(
    group: Sequence[Interaction], settings: RuleSettings, stats: Counter[str]
) -> list[Pair]:
    """The pairs of one prompt's events after de-duplication, filters and the per-prompt cap.

    ``stats`` gains ``candidates:<rule>`` and ``dropped:<why>`` counts.
    """
    first = group[0]
    prompt = first.prompt
    kept: list[Pair] = []
    seen: set[tuple[str, str]] = set()
    prompt_too_long = len(prompt) > settings.max_text_chars
    for rule, function in RULES:
        candidates = function(group, settings)
        stats[f"candidates:{rule.name}"] += len(candidates)
        for chosen, rejected, margin in sorted(candidates, key=_order):
            key = (_normal(chosen), _normal(rejected))
            if not key[0] or not key[1]:
                stats["dropped:empty"] += 1
            elif key[0] == key[1]:
                stats["dropped:identical"] += 1
            elif prompt_too_long or max(len(chosen), len(rejected)) > settings.max_text_chars:
                stats["dropped:too_long"] += 1
            elif key in seen:
                stats["dropped:duplicate"] += 1
            elif len(kept) >= settings.max_pairs_per_prompt:
                stats["dropped:over_cap"] += 1
            else:
                seen.add(key)
                kept.append(
                    Pair(first.prompt_id, prompt, chosen, rejected, rule.weight, margin, rule.name)
                )
    return kept


def all_rules() -> Iterable[Rule]:
    return (rule for rule, _ in RULES)
