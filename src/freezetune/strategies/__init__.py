"""Strategies: the registry, the static strategies, schedules and the learning-rate policy.

Importing the package registers the static strategies; the scoring layer registers ``auto``
and ``auto_rgn`` when it is imported.
"""

from freezetune.strategies import scheduled, static
from freezetune.strategies.lr_policy import default_lr, discriminative
from freezetune.strategies.registry import (
    REGISTRY,
    ResolveContext,
    check_spec,
    listing,
    needs_context,
    register,
    resolve,
)
from freezetune.strategies.schedules import Schedule, StaticSchedule

__all__ = [
    "REGISTRY", "ResolveContext", "Schedule", "StaticSchedule", "check_spec", "default_lr", "discriminative",
    "listing", "needs_context", "register", "resolve", "scheduled", "static",
]
