"""Work for one key done in turns, each turn for every item that waited for it.

A cascade's members finish independently, but advancing the cascade takes the lock on its row, so
advances of one cascade happen one after another. Twenty members of a layer finishing together would
queue twenty transactions on that lock; through ``KeyedBatches`` the caller whose turn it is advances
from every member that finished meanwhile, in one transaction, and the others take its answer.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field


@dataclass(slots=True)
class _Batch:
    items: set[str]
    done: asyncio.Future[None]
    taken: bool = False  # a turn runs (or ran) it


@dataclass(slots=True)
class _Key:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    users: int = 0  # callers inside ``submit`` for this key: the entry goes when the last one leaves
    waiting: _Batch | None = None  # the batch that the next turn will run


class KeyedBatches:
    """Per key, one turn at a time; a turn runs ``work`` once for all the items submitted before it began.

    ``submit`` returns when a turn that included its item has finished (and raises what that turn
    raised). A turn is not cancelled with the caller that runs it: the others are waiting for it too.
    """

    def __init__(self) -> None:
        self._keys: dict[str, _Key] = {}
        self.turns = 0  # how many times ``work`` ran (tests count them)

    async def submit(self, key: str, item: str, work: Callable[[frozenset[str]], Awaitable[None]]) -> None:
        entry = self._keys.get(key) or self._keys.setdefault(key, _Key())
        if entry.waiting is None:
            entry.waiting = _Batch(set(), asyncio.get_running_loop().create_future())
        batch = entry.waiting
        batch.items.add(item)
        entry.users += 1
        try:
            async with entry.lock:
                if not batch.taken:  # nobody ran our batch yet: this turn is ours
                    batch.taken = True
                    if entry.waiting is batch:
                        entry.waiting = None  # later items start the next batch
                    self.turns += 1
                    turn = asyncio.ensure_future(work(frozenset(batch.items)))
                    turn.add_done_callback(functools.partial(_settle, batch.done))
                    await asyncio.shield(batch.done)  # the lock is held until the turn ends
                    return
            # A turn run by another caller (already over, unless that caller was cancelled and left the
            # turn running without the lock): its outcome is ours.
            await asyncio.shield(batch.done)
        finally:
            entry.users -= 1
            if entry.users == 0 and self._keys.get(key) is entry:
                del self._keys[key]

    def __len__(self) -> int:
        """Keys with a caller inside ``submit``."""
        return len(self._keys)


def _settle(done: asyncio.Future[None], turn: asyncio.Future[None]) -> None:
    if turn.cancelled():
        done.cancel()
    elif (error := turn.exception()) is not None:
        done.set_exception(error)
        done.exception()  # whoever awaits it sees it; nobody else needs to be told it was not retrieved
    else:
        done.set_result(None)
