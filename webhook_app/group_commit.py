"""Group commit: requests that arrive together share one commit, led by one of them.

Each request thread hands its item to :meth:`GroupCommit.submit` and gets it back once
a commit that holds it has run. There is no committer thread: the first request to
find no commit under way leads. It takes every item waiting (itself included, up to
``max_batch``), runs ``commit`` over them, wakes them, and passes the lead to the
oldest item that arrived meanwhile, which leads the next batch. So a quiet receiver
commits each delivery at once (no waiting for company), and a busy one commits
everything that arrived during the previous commit in the next one: batches grow with
the load by themselves. Nothing is started after a fork or stopped at exit, and the
Flask test client goes through the very same path as gunicorn's threads.

A leader commits one batch, not the whole backlog, so its own answer is not held up by
later arrivals. A waiter not yet taken into a batch when ``wait_seconds`` run out
leaves the queue and is told so (nothing of it was written); once taken it waits for
its batch's end, as a single INSERT would.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(eq=False, slots=True)
class _Slot(Generic[T]):
    item: T
    woken: threading.Event = field(default_factory=threading.Event)
    promoted: bool = False  # set with ``woken``: lead the next batch
    taken: bool = False  # in a batch being committed


class GroupCommit(Generic[T]):
    """Batches items of concurrent callers into one ``commit(items)`` call at a time.

    ``commit`` must not raise: it records each item's outcome on the item itself (the
    callers read it after :meth:`submit` returns). Should it raise anyway, the leader's
    caller gets the exception and every other item of that batch is left as ``commit``
    left it.
    """

    def __init__(
        self, commit: Callable[[Sequence[T]], None], *, max_batch: int, wait_seconds: float
    ) -> None:
        self._commit = commit
        self._max_batch = max_batch
        self._wait_seconds = wait_seconds
        self._lock = threading.Lock()
        self._waiting: list[_Slot[T]] = []
        self._leading = False

    def submit(self, item: T) -> bool:
        """Return once a commit holding ``item`` has run (True), or False if no batch
        took it within ``wait_seconds`` (then no commit will see it)."""
        slot = _Slot(item)
        with self._lock:
            self._waiting.append(slot)
            lead = not self._leading
            self._leading = True
        if not lead and not self._wait(slot):
            return False
        if slot.promoted or lead:
            self._lead()
        return True

    def _wait(self, slot: _Slot[T]) -> bool:
        """Wait to be committed or promoted; False if given up while still waiting."""
        if slot.woken.wait(self._wait_seconds):
            return True
        with self._lock:
            if not slot.taken and not slot.promoted:
                self._waiting.remove(slot)
                return False
        slot.woken.wait()  # taken: its batch is being committed; promoted: woken already
        return True

    def _lead(self) -> None:
        with self._lock:
            batch = self._waiting[: self._max_batch]
            del self._waiting[: self._max_batch]
            for slot in batch:
                slot.taken = True
        try:
            self._commit([slot.item for slot in batch])
        finally:
            with self._lock:
                for slot in batch:
                    slot.promoted = False
                    slot.woken.set()
                if self._waiting:
                    successor = self._waiting[0]
                    successor.promoted = True
                    successor.woken.set()
                else:
                    self._leading = False
