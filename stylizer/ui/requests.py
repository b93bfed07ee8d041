"""What each open page has asked for: Stylize clicks, Stop presses, live previews and background preparations.

Every event is numbered from one counter, so their order is exact. A run polls these
between its steps and ends itself, so it finishes as a normal event (Gradio's own
``cancels`` on a running generator now and then leaves the outputs marked "Error").

Previews and preparations are *issued* a number when the page triggers them (outside the
queue), which their handler receives with the other inputs; one that is no longer the
page's latest of its kind is superseded and ends at its next step, or never starts.
"""

from __future__ import annotations

import itertools

PREVIEW, PREPARE = "preview", "prepare"


class PageRequests:
    """The requests of every open page, by Gradio session hash."""

    def __init__(self) -> None:
        self._order = itertools.count()
        self._armed: dict[str, int] = {}
        self._stopped: dict[str, int] = {}
        self._latest: dict[tuple[str, str], int] = {}
        self.live_preview: dict[str, bool] = {}

    def arm(self, session: str) -> None:
        """A run was asked for (Stylize clicked): earlier presses of Stop no longer apply, and pending previews are dropped."""
        self._armed[session] = next(self._order)

    def stop(self, session: str) -> None:
        """Stop was pressed: every run and preview of ``session`` asked for before now should end."""
        self._stopped[session] = next(self._order)

    def requested(self, session: str) -> bool:
        """Whether Stop was pressed since the latest Stylize click (never, for API calls that pressed nothing)."""
        stopped = self._stopped.get(session)
        return stopped is not None and stopped > self._armed.get(session, -1)

    def issue(self, kind: str, session: str) -> int:
        """The page triggered a preview or a preparation: its number, now the latest of its kind."""
        number = next(self._order)
        self._latest[kind, session] = number
        return number

    def cancelled(self, kind: str, session: str, number: int | None) -> bool:
        """Whether request ``number`` should end: the page closed, or a newer one of its kind was issued.

        A preview also ends when Stop was pressed or Stylize clicked after it. API calls
        (``number`` None: nothing issued it) are never superseded.
        """
        if number is None:
            return False
        if self._latest.get((kind, session)) != number:
            return True
        if kind != PREVIEW:
            return False
        later = (self._stopped.get(session, -1), self._armed.get(session, -1))
        return max(later) > number

    def forget(self, session: str) -> None:
        """Drop a closed page: its running previews and preparations end at their next step."""
        self._armed.pop(session, None)
        self._stopped.pop(session, None)
        self.live_preview.pop(session, None)
        for key in [key for key in self._latest if key[1] == session]:
            del self._latest[key]
