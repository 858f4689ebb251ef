"""The action catalogue: every CRM action the product knows, by name, with what it is.

One list shared by the sample's campaigns (features.sample), the uplift models and the
next-best-action policy (configs/nba.yaml prices and targets these names), so what a campaign
teaches about an action can reach the decision on that action. Campaign files may hold other
actions too: the A/B analysis reads them and marks them as outside the catalogue.
It lives in features/ because the sample generator and the loader sit there, at the bottom of
the arrows features -> training -> serving / experiments.
"""

from __future__ import annotations

import difflib
from collections.abc import Collection, Iterable
from types import MappingProxyType

# name -> what the customer gets; the names are the policy's and the campaigns' `action`.
ACTIONS = MappingProxyType(
    {
        "welcome_offer": (
            "welcome nudge with a second-order discount for a new buyer who went quiet"
        ),
        "recommendation": "recommendation from the favourite category for a repeat buyer",
        "thank_you": "thank-you note for a loyal customer",
        "vip_invitation": (
            "VIP programme invitation, a loyalty reward, for a loyal high-value customer"
        ),
        "win_back": "win-back offer, a discount, for a valuable customer at risk",
    }
)
ACTION_NAMES: tuple[str, ...] = tuple(ACTIONS)
# The "do nothing" decision: not an action of the catalogue, but every policy's and every
# decision log's way of saying no contact (the holdout's action, the control group).
NO_ACTION = "no_action"
# What a decision's action can be: a catalogue name or no_action
DECISIONS: tuple[str, ...] = (*ACTION_NAMES, NO_ACTION)


def unknown_actions(names: Iterable[object]) -> list[str]:
    """The names (sorted, each once) that are not in the catalogue."""
    return sorted({str(n) for n in names} - set(ACTIONS))


def check_actions(names: Iterable[object], where: str) -> None:
    """Raise a ValueError naming `where` and the catalogue when a name is not in it (with the
    catalogue's spelling of a name it misspells, as a request's contact is told: `winback`
    got no hint here where a contact of that name got one)."""
    unknown = unknown_actions(names)
    if unknown:
        meant = {u: misspelt_action(u) for u in unknown}
        hints = [f"{u!r} -> {m!r}" for u, m in meant.items() if m is not None]
        raise ValueError(
            f"{where}: unknown action(s) {unknown}; the action catalogue "
            f"(crm_ltv.features.actions) has {list(ACTION_NAMES)}"
            + (f" (did you mean {', '.join(hints)}?)" if hints else "")
        )


def misspelt_action(name: str, names: Collection[str] = ACTION_NAMES) -> str | None:
    """The name of `names` (the catalogue's) that `name` misspells (other case or separators,
    or a close typo), or None: for one of `names`, or plainly another action. A shop's variant
    of a name (`win_back_2`, `win_back2`, `welcome_offer_v2`: the name, then a separator or a
    digit) is another action, not a typo of it."""
    if name in names:
        return None
    spelled = {_spelling(n): n for n in names}
    own = _spelling(name)
    if any(own.startswith(s) and own[len(s) :][:1] in VARIANT_MARKS for s in spelled):
        return None
    close = difflib.get_close_matches(own, list(spelled), n=1, cutoff=0.85)
    return spelled[close[0]] if close else None


VARIANT_MARKS = frozenset("_0123456789")  # what follows a name in a shop's variant of it


def _spelling(name: str) -> str:
    return name.strip().lower().replace("-", "_").replace(" ", "_")
