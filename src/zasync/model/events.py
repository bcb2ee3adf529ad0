"""Event classes notified through ``zope.event`` when dispatchers and queues change."""

from __future__ import annotations

from typing import Any

from zope.interface import implementer

from zasync.interfaces import (
    IDispatcherActivated,
    IDispatcherDeactivated,
    IDispatcherRegistered,
    IDispatcherUnregistered,
    IObjectAdded,
)


class AbstractObjectEvent:
    """An event about ``object``."""

    def __init__(self, object: Any) -> None:
        self.object = object

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.object!r}>"


@implementer(IDispatcherRegistered)
class DispatcherRegistered(AbstractObjectEvent):
    """A dispatcher's DispatcherAgents was added to a queue."""


@implementer(IDispatcherUnregistered)
class DispatcherUnregistered(AbstractObjectEvent):
    """A dispatcher's DispatcherAgents was removed from a queue."""


@implementer(IDispatcherActivated)
class DispatcherActivated(AbstractObjectEvent):
    """A dispatcher started working on a queue."""


@implementer(IDispatcherDeactivated)
class DispatcherDeactivated(AbstractObjectEvent):
    """A dispatcher stopped (or was found dead) and its jobs were handed back."""


@implementer(IObjectAdded)
class ObjectAdded(AbstractObjectEvent):
    """The Queues mapping or a queue was created and added to ``parent`` as ``name``."""

    def __init__(self, object: Any, parent: Any, name: str) -> None:
        super().__init__(object)
        self.parent = parent
        self.name = name
