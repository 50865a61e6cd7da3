"""The SDK's timer thread: late announcements of long node attempts."""

from __future__ import annotations

import threading
import time

from flowledger.instrument._heartbeat import unwatch_node, watch_node


class _Attempt:
    """Counts its announcements, as a NodeAttempt would emit its node_started."""

    def __init__(self) -> None:
        self.announced = threading.Event()
        self.count = 0

    def announce(self) -> None:
        self.count += 1
        self.announced.set()


def test_attempts_watched_from_many_threads_are_each_announced_once_soon_after_their_delay() -> None:
    """Attempts watched from several threads while the timer scans are all announced once, well within a second.

    An attempt unwatched before the timer took it is never announced.
    """
    attempts = [_Attempt() for _ in range(600)]
    unwatched: set[int] = set()

    def watch(chunk: list[_Attempt]) -> None:
        for i, attempt in enumerate(chunk):
            watch_node(attempt, 0.001 * (i % 20))
            if i % 3 == 0 and unwatch_node(attempt):  # ended before its delay
                unwatched.add(id(attempt))

    threads = [threading.Thread(target=watch, args=(attempts[i::4],)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for attempt in attempts:
        if id(attempt) not in unwatched:
            assert attempt.announced.wait(1.0), "a watched attempt was not announced"
    time.sleep(0.05)
    assert [a.count for a in attempts] == [0 if id(a) in unwatched else 1 for a in attempts]


def test_an_attempt_watched_while_the_timer_idles_wakes_it() -> None:
    """The timer sleeping with nothing to announce is woken by a new attempt, which is announced after its delay."""
    first = _Attempt()
    watch_node(first, 0.0)
    assert first.announced.wait(1.0)
    time.sleep(0.05)  # nothing watched: the timer sleeps until its idle wake-up, a minute away
    second = _Attempt()
    watch_node(second, 0.01)
    assert second.announced.wait(1.0), "the timer was not woken"
