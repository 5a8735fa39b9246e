"""Backends: where clusters run. All share the interface in :mod:`.base`."""

from .base import Backend, Discovered, Event, Plan, PlannedResource, Poll, get_backend

__all__ = ["Backend", "Discovered", "Event", "Plan", "PlannedResource", "Poll", "get_backend"]
