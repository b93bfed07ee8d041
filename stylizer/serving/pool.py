"""Who gets a free device next: a Stylize job before a live preview before a background preparation.

Jobs take a :class:`Ticket` when they ask for a device and keep it while they wait, so that
within one kind the first to ask is the first served. Previews and preparations look at
:meth:`DevicePool.outranked` between their network passes and step aside, so a Stylize
job waits at most one step of theirs.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from enum import IntEnum


class Priority(IntEnum):
    """How urgent a job is; lower goes first."""

    STYLIZE = 0
    PREVIEW = 1
    PREPARE = 2


@dataclass(frozen=True, order=True)
class Ticket:
    """A place in the queue for a device."""

    priority: Priority
    number: int


class DevicePool:
    """The devices of one worker, handed to waiting jobs in (priority, arrival) order.

    Args:
        devices: the device names, all free at first.
    """

    def __init__(self, devices: Iterable[str]) -> None:
        self.devices = list(devices)
        self._free = list(self.devices)
        self._waiting: set[Ticket] = set()
        self._numbers = itertools.count()
        self._changed = threading.Condition()

    def join(self, priority: Priority) -> Ticket:
        """Start waiting for a device."""
        with self._changed:
            ticket = Ticket(priority, next(self._numbers))
            self._waiting.add(ticket)
            self._changed.notify_all()
            return ticket

    def take(self, ticket: Ticket, timeout: float) -> str | None:
        """A device for ``ticket`` once it is first in line and one is free, or None after ``timeout`` s.

        A ticket that got a device has left the queue; one that got None is still in it.
        """
        with self._changed:
            ready = self._changed.wait_for(lambda: bool(self._free) and ticket == min(self._waiting), timeout)
            if not ready:
                return None
            device = self._free.pop(0)
            self._waiting.discard(ticket)
            self._changed.notify_all()
            return device

    def leave(self, ticket: Ticket) -> None:
        """Stop waiting (the job was cancelled before it got a device); harmless if it already left."""
        with self._changed:
            self._waiting.discard(ticket)
            self._changed.notify_all()

    def release(self, device: str) -> None:
        """Hand a device back."""
        with self._changed:
            self._free.append(device)
            self._changed.notify_all()

    def outranked(self, priority: Priority) -> bool:
        """Whether a more urgent job waits for a device (a job of ``priority`` should then step aside)."""
        with self._changed:
            return any(t.priority < priority for t in self._waiting)

    @property
    def idle(self) -> bool:
        """No job holds a device and none waits."""
        with self._changed:
            return len(self._free) == len(self.devices) and not self._waiting
