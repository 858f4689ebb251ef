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
from collections.abc import Iterable
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


def misspelt_action(name: str) -> str | None:
    """The catalogue name that `name` misspells (other case or separators, or a close typo),
    or None: for `name` in the catalogue, or plainly another action."""
    if name in ACTIONS:
        return None
    spelled = {_spelling(n): n for n in ACTION_NAMES}
    close = difflib.get_close_matches(_spelling(name), list(spelled), n=1, cutoff=0.85)
    return spelled[close[0]] if close else None


def _spelling(name: str) -> str:
    return name.strip().lower().replace("-", "_").replace(" ", "_")
