"""Synthetic telemetry with a planted preference, for tests, the demo and the benchmark.

Responses are built from templates. Better responses are specific to the prompt's topic and
polite; worse ones are vague, rude or off-topic, with about the same length, so a model must
read the meaning, not count tokens. :func:`hidden_quality` scores a response by the fragments
it was built from: that is the preference a trained reward model should recover. Feedback
follows it except for a ``flip_fraction`` of poisoned scenarios, and the stream carries PII,
malformed lines and events without consent, as production telemetry does.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import random
import re
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from rewardops_trainer.storage import ObjectStore

_PRODUCTS = ["the Acme app", "Acme Cloud", "the web dashboard", "Acme Notes", "the desktop client"]
_ITEMS = ["headphones", "running shoes", "coffee grinder", "desk lamp", "backpack", "keyboard"]
_PLANS = ["Basic", "Plus", "Family", "Pro", "Team"]
_DEVICES = ["phone", "tablet", "laptop", "smartwatch", "e-reader"]
_LEADS = ["", "Hi, ", "Quick question: ", "Hello! ", "Sorry to bother you, ", "Urgent: "]

# (prompt templates, specific answers); slots: {product} {item} {plan} {device} {n}
_TOPICS: list[tuple[list[str], list[str]]] = [
    (
        ["how do I reset my password on {product}?", "I forgot my password for {product}."],
        [
            "open Settings, then Security in {product}, tap Reset password and follow the link "
            "we email you within a few minutes.",
            "on the {product} sign-in page choose 'Forgot password'; a reset link arrives by "
            "email and stays valid for one hour.",
        ],
    ),
    (
        ["can I get a refund for my {item}?", "how do I return the {item} I bought?"],
        [
            "the {item} can be returned within 30 days: go to Orders, pick the order and choose "
            "Request refund; the money is back in 5 to 7 business days.",
            "start the return for your {item} under Orders, print the prepaid label and drop "
            "the parcel off; the refund follows once it is scanned.",
        ],
    ),
    (
        ["when will my {item} arrive?", "where is my {item} order right now?"],
        [
            "standard shipping for the {item} takes 3 to 5 business days, and the tracking link "
            "in your confirmation email shows its live status.",
            "your {item} ships from our warehouse within a day; open Orders and tap Track "
            "package to see the carrier's latest scan.",
        ],
    ),
    (
        ["how do I cancel my {plan} subscription?", "I want to stop paying for the {plan} plan."],
        [
            "go to Account, then Billing, select the {plan} plan and press Cancel subscription; "
            "you keep access until the end of the billing period.",
            "cancel the {plan} plan under Account > Billing > Manage plan; no further charges "
            "are made after the current month.",
        ],
    ),
    (
        ["how can I change the delivery address for order {n}?", "wrong address on order {n}"],
        [
            "while order {n} has not shipped you can edit it under Orders > {n} > Change "
            "address, and the new address is confirmed by email.",
            "open order {n} in your account and choose Edit delivery details before it ships; "
            "after dispatch the carrier can still redirect it.",
        ],
    ),
    (
        [
            "how do I turn on two-factor authentication in {product}?",
            "is 2FA available in {product}?",
        ],
        [
            "in {product} open Settings > Security > Two-factor, scan the QR code with an "
            "authenticator app and enter the 6-digit code to confirm.",
            "yes: {product} supports two-factor sign-in; enable it under Security settings and "
            "save the backup codes somewhere safe.",
        ],
    ),
    (
        [
            "how do I export my data from {product}?",
            "can I download everything I stored in {product}?",
        ],
        [
            "choose Settings > Privacy > Export data in {product}; a ZIP archive with all your "
            "files is emailed to you within 24 hours.",
            "request an export from the Privacy page of {product}; you get a download link for "
            "a complete archive of your content.",
        ],
    ),
    (
        ["how do I update my card for the {plan} plan?", "my card expired, what about {plan}?"],
        [
            "open Account > Billing > Payment methods, add the new card and mark it as the "
            "default for the {plan} plan; the next charge uses it.",
            "add your new card under Payment methods and the {plan} renewal will use it "
            "automatically; the expired one can then be removed.",
        ],
    ),
    (
        ["why does my {device} battery drain so fast?", "my {device} dies before lunch"],
        [
            "on the {device}, check Settings > Battery for apps with heavy background use, lower "
            "the screen brightness and turn off always-on location.",
            "battery drain on a {device} usually comes from background refresh; limit it per app "
            "and enable low power mode to last the day.",
        ],
    ),
    (
        ["my {device} won't connect to Wi-Fi, what should I do?", "{device} keeps dropping Wi-Fi"],
        [
            "restart the {device} and the router, forget the network under Settings > Wi-Fi, "
            "then join it again with the password.",
            "update the {device} software, move closer to the router and reset network settings "
            "if it still drops; saved networks are re-entered afterwards.",
        ],
    ),
    (
        ["where can I download an invoice for order {n}?", "I need a receipt for order {n}"],
        [
            "invoices are under Orders > {n} > Download invoice as a PDF, and business details "
            "can be added before you download it.",
            "open order {n} and choose Get receipt; the PDF includes the VAT breakdown your "
            "accountant needs.",
        ],
    ),
]

_POLITE_OPEN = [
    "Sure!",
    "Happy to help.",
    "Thanks for reaching out!",
    "Of course.",
    "Good question.",
    "Glad you asked.",
]
_POLITE_CLOSE = [
    "Let me know if anything else comes up.",
    "Hope this helps!",
    "I'm glad to help further.",
    "Have a great day!",
    "Feel free to ask if you get stuck.",
]
_VAGUE = [
    "It depends on a lot of things, maybe try a few options and see what happens.",
    "Hard to say really, there are many ways this could go, you could look around somewhere.",
    "Probably something in some menu, I am not sure exactly where or how it works.",
    "It might work out eventually if you keep trying different things for a while.",
]
_RUDE = [
    "That is a pretty basic question, figure it out yourself.",
    "Why are you asking me? Read the manual like everyone else does.",
    "Not my problem, stop wasting my time with this kind of stuff.",
    "Seriously? Anyone could work that out without help. Try harder.",
]
_OFF_TOPIC = [
    "Bananas are an excellent source of potassium and make a quick snack.",
    "The Eiffel Tower was finished in 1889 for the World's Fair in Paris.",
    "Jazz grew up in New Orleans in the early twentieth century.",
    "Penguins cannot fly, but they are remarkable swimmers in cold water.",
]
# The longest slot-free piece of each specific answer identifies it, whatever the slots hold.
_SPECIFIC_MARKERS = [
    max(re.split(r"\{\w+\}", answer), key=len).strip().lower()
    for _, answers in _TOPICS
    for answer in answers
]


def hidden_quality(response: str) -> float:
    """The planted preference: polite, topic-specific help up; vague, rude, off-topic down."""
    score = 0.0
    score += sum(1.0 for phrase in _POLITE_OPEN if response.startswith(phrase))
    score += sum(1.0 for phrase in _POLITE_CLOSE if response.endswith(phrase))
    lowered = response.lower()
    if any(marker in lowered for marker in _SPECIFIC_MARKERS):
        score += 2.0
    score -= 2.0 * sum(1 for phrase in _VAGUE if phrase in response)
    score -= 3.0 * sum(1 for phrase in _RUDE if phrase in response)
    score -= 2.0 * sum(1 for phrase in _OFF_TOPIC if phrase in response)
    return score


def _slots(rng: random.Random) -> dict[str, str]:
    return {
        "product": rng.choice(_PRODUCTS),
        "item": rng.choice(_ITEMS),
        "plan": rng.choice(_PLANS),
        "device": rng.choice(_DEVICES),
        "n": str(rng.randint(10000, 99999)),
    }


@dataclass(frozen=True)
class SyntheticPrompt:
    prompt_id: str
    text: str
    topic: int
    slots: dict[str, str]


def synthetic_prompt(index: int) -> SyntheticPrompt:
    """Prompt ``index`` of the fixed pool shared by telemetry and golden sets."""
    rng = random.Random(f"prompt-{index}")
    topic = rng.randrange(len(_TOPICS))
    slots = _slots(rng)
    template = rng.choice(_TOPICS[topic][0])
    lead = rng.choice(_LEADS)
    body = template.format(**slots)
    if lead in ("", "Hello! "):
        body = body[0].upper() + body[1:]
    text = lead + body
    return SyntheticPrompt(
        "p-" + hashlib.sha256(text.encode()).hexdigest()[:16], text, topic, slots
    )


def better_response(rng: random.Random, prompt: SyntheticPrompt) -> str:
    answer = rng.choice(_TOPICS[prompt.topic][1]).format(**prompt.slots)
    answer = answer[0].upper() + answer[1:]
    if rng.random() < 0.25:
        return answer  # specific but plain: still clearly better than any worse response
    return f"{rng.choice(_POLITE_OPEN)} {answer} {rng.choice(_POLITE_CLOSE)}"


def worse_response(rng: random.Random, prompt: SyntheticPrompt) -> str:
    kind = rng.choice((_VAGUE, _RUDE, _OFF_TOPIC))
    first, second = rng.sample(kind, 2)
    return f"{first} {second}" if rng.random() < 0.6 else first


def _luhn_card(rng: random.Random) -> str:
    digits = [4] + [rng.randrange(10) for _ in range(14)]
    total = 0
    for index, value in enumerate(reversed(digits)):
        # The check digit will sit at the right, so these positions double on even indexes.
        doubled = value * 2 if index % 2 == 0 else value
        total += doubled - 9 if doubled > 9 else doubled
    digits.append((10 - total % 10) % 10)
    text = "".join(map(str, digits))
    return " ".join(text[i : i + 4] for i in range(0, 16, 4))


def _pii(rng: random.Random) -> tuple[str, str]:
    kind = rng.choice(("email", "phone", "card", "ip", "secret"))
    if kind == "email":
        value = f"{rng.choice(['jane', 'omar', 'li', 'sam'])}.{rng.randint(1, 999)}@example.com"
        return kind, f"You can reach me at {value}."
    if kind == "phone":
        return kind, f"Call me on +1 415-555-{rng.randint(1000, 9999)}."
    if kind == "card":
        return kind, f"My card is {_luhn_card(rng)}."
    if kind == "ip":
        return kind, f"My IP is 203.0.113.{rng.randint(1, 254)}."
    token = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(24))
    return kind, f"My key is sk-live-{token} if you need it."


@dataclass
class GenerationSummary:
    keys: list[str] = field(default_factory=list)
    lines: int = 0
    #: well-formed lines; ``malformed`` + ``events`` == ``lines``
    events: int = 0
    malformed: int = 0
    #: well-formed events without consent
    no_consent: int = 0
    pii: dict[str, int] = field(default_factory=dict)
    flipped: int = 0
    prompts: int = 0


_SCENARIOS = (
    ("comparison", 0.2),
    ("thumbs", 0.25),
    ("correction", 0.1),
    ("regeneration", 0.1),
    ("rating", 0.1),
    ("reported", 0.1),
    ("implicit", 0.15),
)


def _response_id(text: str) -> str:
    return "r-" + hashlib.sha256(text.encode()).hexdigest()[:16]


def _malform(rng: random.Random, event: dict[str, Any]) -> str:
    kind = rng.randrange(6)
    if kind == 0:
        line = json.dumps(event)
        return line[: len(line) // 2]
    if kind == 1:
        return "this is not json at all"
    broken = dict(event)
    if kind == 2:
        del broken["prompt_id"]
    elif kind == 3:
        broken["rating"] = "five"
    elif kind == 4:
        broken["timestamp"] = "yesterday"
    else:
        broken["thumbs"] = "up"  # misspelt field
    return json.dumps(broken)


class _Writer:
    def __init__(self, directory: Path, files: int, gzip_some: bool) -> None:
        self.paths: list[tuple[str, Path]] = []
        self.streams: list[IO[str]] = []
        for index in range(files):
            key = f"telemetry-{index:03d}.jsonl" + (".gz" if gzip_some and index % 2 else "")
            path = directory / key
            # Closed by close(): the writer holds every file open while events are dealt out.
            stream: IO[str] = (
                gzip.open(path, "wt", encoding="utf-8", compresslevel=1)  # noqa: SIM115
                if key.endswith(".gz")
                else path.open("w", encoding="utf-8")
            )
            self.paths.append((key, path))
            self.streams.append(stream)

    def close(self) -> None:
        for stream in self.streams:
            stream.close()


def generate_telemetry(
    store: ObjectStore,
    *,
    events: int,
    seed: int,
    start: datetime,
    end: datetime,
    files: int = 4,
    gzip_some: bool = True,
    flip_fraction: float = 0.0,
    malformed_fraction: float = 0.01,
    no_consent_fraction: float = 0.05,
    pii_fraction: float = 0.05,
) -> GenerationSummary:
    """Write about ``events`` lines (whole scenarios) over ``files`` objects in ``store``."""
    if events < 1 or files < 1:
        raise ValueError("events and files must be at least 1")
    if end <= start:
        raise ValueError("end must be after start")
    rng = random.Random(seed)
    summary = GenerationSummary(pii={})
    pool = max(20, events // 8)
    prompts: dict[int, SyntheticPrompt] = {}
    span = (end - start).total_seconds()
    start_s = start.timestamp()
    names = [name for name, _ in _SCENARIOS]
    weights = [weight for _, weight in _SCENARIOS]
    with tempfile.TemporaryDirectory() as tmp:
        writer = _Writer(Path(tmp), files, gzip_some)
        try:
            while summary.lines < events:
                index = rng.randrange(pool)
                prompt = prompts.get(index)
                if prompt is None:
                    prompt = prompts[index] = synthetic_prompt(index)
                flipped = rng.random() < flip_fraction
                summary.flipped += flipped
                stream = writer.streams[rng.randrange(files)]
                for event in _scenario(rng, rng.choices(names, weights)[0], prompt, flipped):
                    moment = start_s + rng.random() * span
                    event["event_id"] = f"e-{seed}-{summary.lines}"
                    event["timestamp"] = (
                        datetime.fromtimestamp(moment, UTC).isoformat().replace("+00:00", "Z")
                    )
                    event["consent"] = rng.random() >= no_consent_fraction
                    if rng.random() < pii_fraction:
                        kind, sentence = _pii(rng)
                        event["prompt"] = f"{event['prompt']} {sentence}"
                        summary.pii[kind] = summary.pii.get(kind, 0) + 1
                    if rng.random() < malformed_fraction:
                        stream.write(_malform(rng, event) + "\n")
                        summary.malformed += 1
                    else:
                        stream.write(json.dumps(event) + "\n")
                        summary.events += 1
                        summary.no_consent += not event["consent"]
                    summary.lines += 1
        finally:
            writer.close()
        for key, path in writer.paths:
            store.put_file(key, path)
            summary.keys.append(key)
    summary.prompts = len(prompts)
    return summary


def _scenario(
    rng: random.Random, name: str, prompt: SyntheticPrompt, flipped: bool
) -> list[dict[str, Any]]:
    """The events of one interaction; ``flipped`` makes the user prefer the worse response."""
    good, bad = better_response(rng, prompt), worse_response(rng, prompt)
    preferred, other = (bad, good) if flipped else (good, bad)
    session = f"s-{rng.getrandbits(48):012x}"
    user = hashlib.sha256(f"user-{rng.randrange(50_000)}".encode()).hexdigest()[:32]

    def event(response: str, **feedback: Any) -> dict[str, Any]:
        return {
            "schema_version": 1,
            "session_id": session,
            "user_id_hash": user,
            "prompt_id": prompt.prompt_id,
            "prompt": prompt.text,
            "response_id": _response_id(response),
            "response": response,
            "model_version": "chat-2026-01",
            **feedback,
        }

    if name == "comparison":
        shown = rng.random() < 0.5
        this, that = (preferred, other) if shown else (other, preferred)
        comparison = {
            "other_response_id": _response_id(that),
            "other_response": that,
            "choice": "this" if shown else "other",
        }
        return [event(this, comparison=comparison)]
    if name == "thumbs":
        if rng.random() < 0.5:
            return [event(preferred, thumb="up")]
        return [event(other, thumb="down")]
    if name == "correction":
        return [event(other, correction=preferred)]
    if name == "regeneration":
        return [event(other, regenerated=True), event(preferred, accepted=True)]
    if name == "rating":
        if rng.random() < 0.5:
            return [event(preferred, rating=rng.choice((4, 5)))]
        return [event(other, rating=rng.choice((1, 2)))]
    if name == "reported":
        return [event(other, reported_wrong=True), event(preferred)]
    if rng.random() < 0.5:
        return [event(preferred, dwell_ms=rng.randint(15_000, 40_000), copied=rng.random() < 0.5)]
    return [event(other, dwell_ms=rng.randint(500, 4_000))]


def generate_golden(store: ObjectStore, key: str, *, pairs: int, seed: int) -> int:
    """Write ``pairs`` golden pairs (JSONL) at ``key``; their prompts come from the same pool."""
    rng = random.Random(f"golden-{seed}")
    rows: list[str] = []
    used: set[str] = set()
    while len(rows) < pairs:
        prompt = synthetic_prompt(rng.randrange(max(50, pairs * 4)))
        if prompt.prompt_id in used:
            continue
        used.add(prompt.prompt_id)
        row = {
            "prompt_id": prompt.prompt_id,
            "prompt": prompt.text,
            "chosen": better_response(rng, prompt),
            "rejected": worse_response(rng, prompt),
        }
        rows.append(json.dumps(row))
    store.write_bytes(key, ("\n".join(rows) + "\n").encode())
    return len(rows)
