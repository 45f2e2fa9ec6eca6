"""Heroku's add-on names, as people type them, to the services and plans slipway has.

"If it runs on Heroku, it runs here": ``addons:create heroku-postgresql:essential-0``
and an app.json's ``"addons": ["heroku-redis:mini"]`` name Heroku's services and
tiers. They map onto ours by size class: Heroku's smallest tiers to ``mini``, its
small production tiers to ``basic``, everything larger to the largest plan here.
Names of our own pass through unchanged, so every refusal still lists our plans.
"""

from __future__ import annotations

import re

#: Service names people write -> the service here.
SERVICES = {
    "heroku-postgresql": "postgres",
    "postgresql": "postgres",
    "postgres": "postgres",
    "heroku-redis": "redis",
    "redis": "redis",
    # Heroku's search add-ons (Bonsai, SearchBox) and the APIs' own names.
    "bonsai": "search",
    "searchbox": "search",
    "elasticsearch": "search",
    "opensearch": "search",
    "search": "search",
}

#: The attachment (``NAME_URL``) a Heroku search add-on's own name implies: Bonsai sets
#: BONSAI_URL, SearchBox SEARCHBOX_URL, and code written for them reads those.
ATTACHMENTS = {"bonsai": "BONSAI", "searchbox": "SEARCHBOX"}

#: (service, Heroku tier pattern) -> our plan, first match wins.
_TIERS: tuple[tuple[str, re.Pattern[str], str], ...] = (
    ("postgres", re.compile(r"(essential-0|hobby-dev)"), "mini"),
    ("postgres", re.compile(r"(essential-[12]|hobby-basic)"), "basic"),
    ("postgres", re.compile(r"(standard|premium|private|shield)-\d+"), "standard"),
    # Every Heroku Redis tier is an instance of its own: a dedicated plan here, never shared.
    ("redis", re.compile(r"(hobby-dev|mini)"), "mini"),
    ("redis", re.compile(r"(premium|private|shield)-\d+"), "basic"),
    # Only the free tiers: a paid one holds production data, which the in-memory ``dev``
    # plan would lose at a restart; those are refused with the plans listed.
    ("search", re.compile(r"sandbox(-\d+)?"), "dev"),  # Bonsai's
    ("search", re.compile(r"starter"), "dev"),  # SearchBox's
)


def canonical(ref: str) -> str:
    """``heroku-postgresql:essential-0`` -> ``postgres:mini``; our own names unchanged."""
    service, sep, plan = ref.partition(":")
    ours = SERVICES.get(service, service)
    for tier_service, pattern, plan_here in _TIERS:
        if tier_service == ours and pattern.fullmatch(plan):
            return f"{ours}:{plan_here}"
    return f"{ours}{sep}{plan}"


def attachment(ref: str) -> str | None:
    """The attachment ``ref``'s service name implies (``bonsai:sandbox`` -> BONSAI), if any."""
    return ATTACHMENTS.get(ref.partition(":")[0])
