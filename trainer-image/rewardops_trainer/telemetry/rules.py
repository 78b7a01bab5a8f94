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

    #: (object index << 32) | line number: the input order, whatever process read the line.
    order: int
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


@dataclass(frozen=True)
class Group:
    """One prompt's events with what several rules share, computed once."""

    events: Sequence[Interaction]
    #: response id -> text (the first seen)
    texts: dict[str, str]
    #: response id -> thumbs up minus thumbs down
    votes: Counter[str]
    #: responses with any complaint: reported, regenerated, corrected, rated <= 2, net
    #: thumbs-down, or lost a comparison
    complained: set[str]

    @classmethod
    def of(cls, events: Sequence[Interaction]) -> Group:
        texts: dict[str, str] = {}
        votes: Counter[str] = Counter()
        complained: set[str] = set()
        # Unpacked once per event: this runs for every event of every prompt.
        for (
            _order,
            _prompt_id,
            _prompt,
            _session,
            rid,
            response,
            thumb,
            rating,
            other_id,
            _other,
            choice,
            correction,
            regenerated,
            _accepted,
            _dwell,
            _copied,
            reported,
        ) in events:
            if rid not in texts:
                texts[rid] = response
            if thumb == "up":
                votes[rid] += 1
            elif thumb == "down":
                votes[rid] -= 1
            if (
                reported
                or regenerated
                or correction
                or (rating is not None and rating <= 2)
                or choice == "other"
            ):
                complained.add(rid)
            if choice == "this" and other_id:
                complained.add(other_id)
        complained.update(rid for rid, net in votes.items() if net < 0)
        return cls(events, texts, votes, complained)


def comparison(group: Group, settings: RuleSettings) -> list[Candidate]:
    out: list[Candidate] = []
    for event in group.events:
        if event.other_response is None:
            continue
        if event.choice == "this":
            out.append((event.response, event.other_response, 1.0))
        else:
            out.append((event.other_response, event.response, 1.0))
    return out


def correction(group: Group, settings: RuleSettings) -> list[Candidate]:
    return [
        (e.correction, e.response, 1.0)
        for e in group.events
        if e.correction and e.correction.strip()
    ]


def thumbs(group: Group, settings: RuleSettings) -> list[Candidate]:
    texts, votes = group.texts, group.votes
    ups = [rid for rid, net in votes.items() if net > 0]
    downs = [rid for rid, net in votes.items() if net < 0]
    return [(texts[up], texts[down], 0.5) for up in ups for down in downs]


def reported_wrong(group: Group, settings: RuleSettings) -> list[Candidate]:
    texts = group.texts
    reported = {e.response_id for e in group.events if e.reported_wrong}
    if not reported:
        return []
    # Only a response nobody complained about in any way beats a reported one.
    clean = [rid for rid in texts if rid not in group.complained]
    return [(texts[good], texts[bad], 0.5) for good in clean for bad in sorted(reported)]


def rating(group: Group, settings: RuleSettings) -> list[Candidate]:
    texts = group.texts
    ratings: defaultdict[str, list[int]] = defaultdict(list)
    for event in group.events:
        if event.rating is not None:
            ratings[event.response_id].append(event.rating)
    means = {rid: sum(values) / len(values) for rid, values in ratings.items()}
    return [
        (texts[a], texts[b], min(1.0, (means[a] - means[b]) / 4))
        for a in means
        for b in means
        if means[a] - means[b] >= settings.rating_gap
    ]


def regeneration(group: Group, settings: RuleSettings) -> list[Candidate]:
    texts = group.texts
    accepted: defaultdict[str, set[str]] = defaultdict(set)
    regenerated: defaultdict[str, set[str]] = defaultdict(set)
    for event in group.events:
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


def implicit(group: Group, settings: RuleSettings) -> list[Candidate]:
    texts = group.texts
    dwell: dict[str, int] = {}
    copied: set[str] = set()
    reported: set[str] = set()
    for event in group.events:
        rid, dwell_ms = event.response_id, event.dwell_ms
        if dwell_ms is not None:
            dwell[rid] = max(dwell.get(rid, 0), dwell_ms)
        if event.copied:
            copied.add(rid)
        if event.reported_wrong:
            reported.add(rid)
    threshold = settings.dwell_threshold_ms
    out: list[Candidate] = []
    for a, dwell_a in dwell.items():
        if a in reported:
            continue
        for b, dwell_b in dwell.items():
            if a == b:
                continue
            by_copy = a in copied and b not in copied
            against_copy = b in copied and a not in copied
            by_dwell = dwell_a - dwell_b >= threshold
            against_dwell = dwell_b - dwell_a >= threshold
            # Both signals must agree or one must be silent: a weak signal never overrides.
            if (by_copy and not against_dwell) or (by_dwell and not against_copy):
                out.append((texts[a], texts[b], 0.1))
    return out


RuleFunction = Callable[[Group, RuleSettings], list[Candidate]]

#: In priority order: when a prompt has more pairs than its cap, earlier rules win.
RULES: tuple[tuple[Rule, RuleFunction], ...] = (
    (
        Rule("comparison", 1.0, 1.0, "A-vs-B choice: the chosen response beats the other"),
        comparison,
    ),
    (Rule("correction", 1.0, 1.0, "the user's correction beats the original response"), correction),
    (Rule("thumbs", 0.8, 0.5, "net thumbs-up response beats net thumbs-down response"), thumbs),
    (
        Rule("reported_wrong", 0.7, 0.5, "a response without complaints beats one reported wrong"),
        reported_wrong,
    ),
    (Rule("rating", 0.6, 0.25, "mean rating higher by >= 2 stars wins; margin = gap / 4"), rating),
    (
        Rule("regeneration", 0.6, 0.3, "the accepted response beats the ones regenerated"),
        regeneration,
    ),
    (
        Rule("implicit", 0.2, 0.1, "copied or longer-dwelt (by the threshold) response wins"),
        implicit,
    ),
)
RULE_NAMES = tuple(rule.name for rule, _ in RULES)
_CANDIDATE_KEYS = tuple(f"candidates:{name}" for name in RULE_NAMES)


def _normal(text: str, cache: dict[str, str]) -> str:
    found = cache.get(text)
    if found is None:
        found = cache[text] = " ".join(text.split())
    return found


def _order(candidate: Candidate) -> int:
    # A fixed, content-based order inside a rule, so the cap does not favour the first logged.
    return zlib.crc32(f"{candidate[0]}\x00{candidate[1]}".encode())


def select_pairs(
    events: Sequence[Interaction], settings: RuleSettings, stats: Counter[str]
) -> list[Pair]:
    """The pairs of one prompt's events after de-duplication, filters and the per-prompt cap.

    ``stats`` gains ``candidates:<rule>`` and ``dropped:<why>`` counts.
    """
    group = Group.of(events)
    first = events[0]
    prompt = first.prompt
    kept: list[Pair] = []
    seen: set[tuple[str, str]] = set()
    normal: dict[str, str] = {}
    prompt_too_long = len(prompt) > settings.max_text_chars
    cap = settings.max_pairs_per_prompt
    for (rule, function), counted in zip(RULES, _CANDIDATE_KEYS, strict=True):
        candidates = function(group, settings)
        stats[counted] += len(candidates)
        if len(kept) >= cap:
            # Full: the rest cannot be kept, whatever the filters would say.
            stats["dropped:over_cap"] += len(candidates)
            continue
        for chosen, rejected, margin in sorted(candidates, key=_order):
            if len(kept) >= cap:
                stats["dropped:over_cap"] += 1
                continue
            key = (_normal(chosen, normal), _normal(rejected, normal))
            if not key[0] or not key[1]:
                stats["dropped:empty"] += 1
            elif key[0] == key[1]:
                stats["dropped:identical"] += 1
            elif prompt_too_long or max(len(chosen), len(rejected)) > settings.max_text_chars:
                stats["dropped:too_long"] += 1
            elif key in seen:
                stats["dropped:duplicate"] += 1
            else:
                seen.add(key)
                kept.append(
                    Pair(first.prompt_id, prompt, chosen, rejected, rule.weight, margin, rule.name)
                )
    return kept


def all_rules() -> Iterable[Rule]:
    return (rule for rule, _ in RULES)
