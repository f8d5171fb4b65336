"""The words every stage shares: kinds of media, actions, modes, Content Credentials states.

One place, so that a new kind or action is one edit (and the schemas, which list the same
words, are checked against it by the tests).
"""

from __future__ import annotations

# what a file is, from the strongest claim to none; "unreadable" is apart: nothing was judged
KINDS = ("ai_generated", "ai_composite", "ai_possible", "algorithmic", "human", "unknown",
         "unreadable")
AI_KINDS = frozenset(KINDS[:3])
# the strength of a signal's kind when several disagree: any AI claim outranks a human one
KIND_RANK = {kind: rank for rank, kind in enumerate(reversed(KINDS[:5]), start=1)}

# what the policy does with a file, weakest first
ACTIONS = ("allow", "flag", "escalate", "block")
ACTION_STRENGTH = {a: i for i, a in enumerate(ACTIONS)}
# the actions that stop a delivery until the studio approves
HOLDS = frozenset({"escalate", "block"})

MODES = ("enforce", "warn", "audit")

C2PA_STATES = ("valid_trusted", "valid_untrusted", "invalid", "stripped", "remote", "absent",
               "not_checked")


def held(action: str) -> bool:
    """Whether ``action`` keeps a file out of a delivery until approved."""
    return action in HOLDS


def at_least(action: str, threshold: str) -> bool:
    """Whether ``action`` is as strong as ``threshold`` (a notifier's ``min_action``)."""
    return ACTION_STRENGTH[action] >= ACTION_STRENGTH[threshold]
