"""Pair rules: how the feedback on one prompt becomes (chosen, rejected) preference pairs.

Every rule has its own weight (how much the trainer trusts it) and margin (how far apart the
two rewards should be); docs/telemetry.md documents each. Rules run in priority order; per
prompt, pairs are de-duplicated, pairs with identical or over-long texts are dropped, and at
most ``max_pairs_per_prompt`` are kept, highest-priority rules first.
"""

from __future__ import annotations

import zlib
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Iterator, MutableMapping, Sequence
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


class Pair(NamedTuple):
    """One preference pair. A named tuple: a frozen dataclass's ``__init__`` (a slot call per
    field) cost more than the rest of a pair's selection."""

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


class Group(NamedTuple):
    """One prompt's events, gathered in a single pass into what the rules read.

    One walk serves all seven rules, and a rule whose signal is absent (most of them, for
    most prompts) finds an empty collection. Insertion orders are those of the events, so
    candidates come out in event order.
    """

    #: response id -> text (the first seen)
    texts: dict[str, str]
    #: response id -> thumbs up minus thumbs down
    votes: dict[str, int]
    #: responses with any complaint: reported, regenerated, corrected, rated <= 2, net
    #: thumbs-down, or lost a comparison
    complained: set[str]
    comparisons: list[Candidate]
    corrections: list[Candidate]
    #: responses reported wrong
    reported: set[str]
    #: response id -> its ratings
    ratings: dict[str, list[int]]
    #: session id -> responses accepted / regenerated in it
    accepted: dict[str, set[str]]
    regenerated: dict[str, set[str]]
    #: response id -> longest dwell
    dwell: dict[str, int]
    copied: set[str]

    @classmethod
    def of(cls, events: Sequence[Interaction]) -> Group:
        texts: dict[str, str] = {}
        votes: dict[str, int] = {}
        complained: set[str] = set()
        comparisons: list[Candidate] = []
        corrections: list[Candidate] = []
        reported: set[str] = set()
        ratings: dict[str, list[int]] = {}
        accepted: dict[str, set[str]] = {}
        regenerated: dict[str, set[str]] = {}
        dwell: dict[str, int] = {}
        copied: set[str] = set()
        # Unpacked once per event: this runs for every event of every prompt.
        for (
            _order,
            _prompt_id,
            _prompt,
            session,
            rid,
            response,
            thumb,
            rating,
            other_id,
            other,
            choice,
            correction,
            was_regenerated,
            was_accepted,
            dwell_ms,
            was_copied,
            was_reported,
        ) in events:
            if rid not in texts:
                texts[rid] = response
            if thumb is not None:
                if thumb == "up":
                    votes[rid] = votes.get(rid, 0) + 1
                elif thumb == "down":
                    votes[rid] = votes.get(rid, 0) - 1
            if other is not None:
                comparisons.append(
                    (response, other, 1.0) if choice == "this" else (other, response, 1.0)
                )
            if choice == "other":
                complained.add(rid)
            elif choice == "this" and other_id:
                complained.add(other_id)
            if correction:
                complained.add(rid)
                if correction.strip():
                    corrections.append((correction, response, 1.0))
            if rating is not None:
                if rating <= 2:
                    complained.add(rid)
                if rid in ratings:
                    ratings[rid].append(rating)
                else:
                    ratings[rid] = [rating]
            if was_regenerated:
                complained.add(rid)
                regenerated.setdefault(session, set()).add(rid)
            elif was_accepted:
                accepted.setdefault(session, set()).add(rid)
            if dwell_ms is not None:
                dwell[rid] = max(dwell.get(rid, 0), dwell_ms)
            if was_copied:
                copied.add(rid)
            if was_reported:
                complained.add(rid)
                reported.add(rid)
        if votes:
            complained.update(rid for rid, net in votes.items() if net < 0)
        # tuple.__new__: the named tuple's own __new__ is a Python call, once per prompt.
        return tuple.__new__(
            cls,
            (
                texts,
                votes,
                complained,
                comparisons,
                corrections,
                reported,
                ratings,
                accepted,
                regenerated,
                dwell,
                copied,
            ),
        )


# Each rule comes with a function counting its candidates without building them: once a
# prompt's cap is full, later rules only add to counts, and on a hot prompt (hundreds of
# events) thumbs, reported_wrong and implicit have thousands of candidates.


def comparison(group: Group, settings: RuleSettings) -> list[Candidate]:
    return group.comparisons


def count_comparison(group: Group, settings: RuleSettings) -> int:
    return len(group.comparisons)


def correction(group: Group, settings: RuleSettings) -> list[Candidate]:
    return group.corrections


def count_correction(group: Group, settings: RuleSettings) -> int:
    return len(group.corrections)


def _thumbed(group: Group) -> tuple[list[str], list[str]]:
    """(net thumbs-up responses, net thumbs-down responses)."""
    votes = group.votes
    return [rid for rid, net in votes.items() if net > 0], [
        rid for rid, net in votes.items() if net < 0
    ]


def thumbs(group: Group, settings: RuleSettings) -> list[Candidate]:
    if not group.votes:
        return []
    texts = group.texts
    ups, downs = _thumbed(group)
    return [(texts[up], texts[down], 0.5) for up in ups for down in downs]


def count_thumbs(group: Group, settings: RuleSettings) -> int:
    if not group.votes:
        return 0
    ups, downs = _thumbed(group)
    return len(ups) * len(downs)


def _clean(group: Group) -> list[str]:
    # Only a response nobody complained about in any way beats a reported one.
    return [rid for rid in group.texts if rid not in group.complained]


def reported_wrong(group: Group, settings: RuleSettings) -> list[Candidate]:
    texts, reported = group.texts, group.reported
    if not reported:
        return []
    return [(texts[good], texts[bad], 0.5) for good in _clean(group) for bad in sorted(reported)]


def count_reported_wrong(group: Group, settings: RuleSettings) -> int:
    return len(_clean(group)) * len(group.reported) if group.reported else 0


def _rating_gaps(group: Group, settings: RuleSettings) -> Iterator[tuple[str, str, float]]:
    """(better, worse, mean-rating gap) for every pair of responses far enough apart."""
    means = {rid: sum(values) / len(values) for rid, values in group.ratings.items()}
    for a, mean_a in means.items():
        for b, mean_b in means.items():
            if mean_a - mean_b >= settings.rating_gap:
                yield a, b, mean_a - mean_b


def rating(group: Group, settings: RuleSettings) -> list[Candidate]:
    if not group.ratings:
        return []
    texts = group.texts
    return [(texts[a], texts[b], min(1.0, gap / 4)) for a, b, gap in _rating_gaps(group, settings)]


def count_rating(group: Group, settings: RuleSettings) -> int:
    """``len(rating(...))`` in one sweep over the sorted means, not pair by pair.

    The float ``mean_a - mean_b`` never grows as ``mean_b`` grows, nor shrinks as ``mean_a``
    grows (rounding is monotonic), so the responses a beats are a prefix of the sorted
    means, and that prefix only lengthens from one a to the next.
    """
    means = sorted(sum(values) / len(values) for values in group.ratings.values())
    gap = settings.rating_gap
    total = beaten = 0
    for mean_a in means:
        while beaten < len(means) and mean_a - means[beaten] >= gap:
            beaten += 1
        total += beaten
    return total


def _regenerations(group: Group) -> Iterator[tuple[str, str]]:
    """(accepted, regenerated) response pairs of the same session."""
    regenerated = group.regenerated
    for session, goods in group.accepted.items():
        for good in sorted(goods):
            for bad in sorted(regenerated.get(session, ())):
                if good != bad:
                    yield good, bad


def regeneration(group: Group, settings: RuleSettings) -> list[Candidate]:
    if not group.regenerated:
        return []
    texts = group.texts
    return [(texts[good], texts[bad], 0.3) for good, bad in _regenerations(group)]


def count_regeneration(group: Group, settings: RuleSettings) -> int:
    regenerated = group.regenerated
    total = 0
    for session, goods in group.accepted.items():
        bads = regenerated.get(session)
        if bads:
            total += len(goods) * len(bads) - len(goods & bads)
    return total


def _implicit_wins(group: Group, settings: RuleSettings) -> Iterator[tuple[str, str]]:
    """(winner, loser) response pairs by copy and dwell."""
    dwell, copied, reported = group.dwell, group.copied, group.reported
    threshold = settings.dwell_threshold_ms
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
                yield a, b


def implicit(group: Group, settings: RuleSettings) -> list[Candidate]:
    if not group.dwell:
        return []
    texts = group.texts
    return [(texts[a], texts[b], 0.1) for a, b in _implicit_wins(group, settings)]


def count_implicit(group: Group, settings: RuleSettings) -> int:
    """``len(implicit(...))`` by binary search over sorted dwell times, not pair by pair.

    From the conditions in :func:`_implicit_wins`, for an unreported response a with dwell da
    against b with dwell db (b != a; times are integers): if a was copied, it beats another
    copied b when db <= da - T, and an uncopied b when db < da + T (T > 0) or db <= da - T
    (T <= 0); an uncopied a never beats a copied b, and beats an uncopied one when
    db <= da - T. With T <= 0, a itself meets db <= da - T and is taken off.
    """
    dwell, copied, reported = group.dwell, group.copied, group.reported
    threshold = settings.dwell_threshold_ms
    with_copy = sorted(ms for rid, ms in dwell.items() if rid in copied)
    without_copy = sorted(ms for rid, ms in dwell.items() if rid not in copied)
    itself = 1 if threshold <= 0 else 0
    total = 0
    for a, dwell_a in dwell.items():
        if a in reported:
            continue
        if a in copied:
            total += bisect_right(with_copy, dwell_a - threshold) - itself
            if threshold > 0:
                total += bisect_left(without_copy, dwell_a + threshold)
            else:
                total += bisect_right(without_copy, dwell_a - threshold)
        else:
            total += bisect_right(without_copy, dwell_a - threshold) - itself
    return total


RuleFunction = Callable[[Group, RuleSettings], list[Candidate]]
CountFunction = Callable[[Group, RuleSettings], int]

#: In priority order: when a prompt has more pairs than its cap, earlier rules win.
RULES: tuple[tuple[Rule, RuleFunction, CountFunction], ...] = (
    (
        Rule("comparison", 1.0, 1.0, "A-vs-B choice: the chosen response beats the other"),
        comparison,
        count_comparison,
    ),
    (
        Rule("correction", 1.0, 1.0, "the user's correction beats the original response"),
        correction,
        count_correction,
    ),
    (
        Rule("thumbs", 0.8, 0.5, "net thumbs-up response beats net thumbs-down response"),
        thumbs,
        count_thumbs,
    ),
    (
        Rule("reported_wrong", 0.7, 0.5, "a response without complaints beats one reported wrong"),
        reported_wrong,
        count_reported_wrong,
    ),
    (
        Rule("rating", 0.6, 0.25, "mean rating higher by >= 2 stars wins; margin = gap / 4"),
        rating,
        count_rating,
    ),
    (
        Rule("regeneration", 0.6, 0.3, "the accepted response beats the ones regenerated"),
        regeneration,
        count_regeneration,
    ),
    (
        Rule("implicit", 0.2, 0.1, "copied or longer-dwelt (by the threshold) response wins"),
        implicit,
        count_implicit,
    ),
)
RULE_NAMES = tuple(rule.name for rule, _, _ in RULES)
#: RULES, each with the key of its candidate count in the stats.
_COUNTED_RULES = tuple(
    (rule, function, count, f"candidates:{rule.name}") for rule, function, count in RULES
)


def _normal(text: str, cache: dict[str, str]) -> str:
    """``text`` with whitespace runs folded to one space and the ends stripped."""
    found = cache.get(text)
    if found is None:
        # Most texts are folded already: no whitespace but single inner spaces (every other
        # whitespace character is unprintable). Checking is cheaper than splitting.
        if text.isprintable() and "  " not in text and text[:1] != " " and text[-1:] != " ":
            found = cache[text] = text
        else:
            found = cache[text] = " ".join(text.split())
    return found


def _order(candidate: Candidate) -> int:
    # A fixed, content-based order inside a rule, so the cap does not favour the first logged.
    return zlib.crc32(f"{candidate[0]}\x00{candidate[1]}".encode())


def select_pairs(
    events: Sequence[Interaction], settings: RuleSettings, stats: MutableMapping[str, int]
) -> list[Pair]:
    """The pairs of one prompt's events after de-duplication, filters and the per-prompt cap.

    ``stats`` gains ``candidates:<rule>`` and ``dropped:<why>`` counts; a missing key must read
    as 0 (a ``Counter``, or a ``defaultdict(int)``, whose stores cost less).
    """
    group = Group.of(events)
    first = events[0]
    prompt_id, prompt = first.prompt_id, first.prompt
    kept: list[Pair] = []
    seen: set[tuple[str, str]] = set()
    normal: dict[str, str] = {}
    max_chars = settings.max_text_chars
    prompt_too_long = len(prompt) > max_chars
    cap = settings.max_pairs_per_prompt
    for rule, function, count, counted in _COUNTED_RULES:
        if len(kept) >= cap:
            # Full: the rest cannot be kept, whatever the filters would say.
            over = count(group, settings)
            stats[counted] += over
            stats["dropped:over_cap"] += over
            continue
        candidates = function(group, settings)
        stats[counted] += len(candidates)
        if not candidates:
            continue
        # Most rules give a prompt one candidate, which needs no ordering key.
        ordered = sorted(candidates, key=_order) if len(candidates) > 1 else candidates
        for index, (chosen, rejected, margin) in enumerate(ordered):
            if len(kept) >= cap:
                stats["dropped:over_cap"] += len(ordered) - index
                break
            key = (_normal(chosen, normal), _normal(rejected, normal))
            if not key[0] or not key[1]:
                stats["dropped:empty"] += 1
            elif key[0] == key[1]:
                stats["dropped:identical"] += 1
            elif prompt_too_long or len(chosen) > max_chars or len(rejected) > max_chars:
                stats["dropped:too_long"] += 1
            elif key in seen:
                stats["dropped:duplicate"] += 1
            else:
                seen.add(key)
                # tuple.__new__: the named tuple's own __new__ is a Python call.
                kept.append(
                    tuple.__new__(
                        Pair, (prompt_id, prompt, chosen, rejected, rule.weight, margin, rule.name)
                    )
                )
    return kept


def all_rules() -> Iterable[Rule]:
    return (rule for rule, _, _ in RULES)
