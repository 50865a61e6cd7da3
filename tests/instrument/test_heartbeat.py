"""The SDK's timer thread: late announcements of long node attempts."""

from __future__ import annotations

import gc
import queue
import threading
import time
from typing import Any

import pytest

from flowledger.instrument import _heartbeat
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
            assert attempt.announced.wait(10.0), "a watched attempt was not announced"
    time.sleep(0.05)
    assert [a.count for a in attempts] == [0 if id(a) in unwatched else 1 for a in attempts]


def test_an_attempt_watched_while_the_timer_idles_wakes_it() -> None:
    """The timer sleeping with nothing to announce is woken by a new attempt, which is announced after its delay."""
    first = _Attempt()
    watch_node(first, 0.0)
    assert first.announced.wait(10.0)
    time.sleep(0.05)  # nothing watched: the timer sleeps until its idle wake-up, a minute away
    second = _Attempt()
    watch_node(second, 0.01)
    assert second.announced.wait(10.0), "the timer was not woken"


def test_attempts_watched_while_the_timer_copies_the_watched_ones_neither_end_it_nor_go_unannounced() -> None:
    """Another thread may watch an attempt while the timer copies the watched ones; the timer carries on.

    The copy is interrupted on purpose: a garbage collection set off by the
    timer's own allocations calls back, and the callback has another thread
    watch an attempt and waits for it. A copy that ran Python code midway
    (``list(d.items())`` allocates a tuple per entry) ended the timer with
    "dictionary changed size during iteration", and no attempt was announced
    after that.
    """
    watched_during_a_copy: list[_Attempt] = []
    asks: queue.SimpleQueue[threading.Event | None] = queue.SimpleQueue()

    def watch_when_asked() -> None:
        while (done := asks.get()) is not None:
            attempt = _Attempt()
            watched_during_a_copy.append(attempt)
            watch_node(attempt, 0.0)
            done.set()

    def ask_from_the_timer(phase: str, info: dict[str, Any]) -> None:
        if phase == "start" and threading.current_thread().name == "flowledger-timer" and asks.qsize() < 50:
            done = threading.Event()
            asks.put(done)
            done.wait(0.1)  # bounded: the other thread may wait for a lock the timer holds here

    helper = threading.Thread(target=watch_when_asked)
    helper.start()
    threshold, enabled = gc.get_threshold(), gc.isenabled()
    gc.callbacks.append(ask_from_the_timer)
    gc.enable()  # another thread (a subprocess being started, say) may have turned collection off for a moment
    gc.set_threshold(1)  # a collection at nearly every allocation, the timer's copy included
    announced = True
    try:
        deadline = time.monotonic() + 20.0
        while announced and not watched_during_a_copy and time.monotonic() < deadline:
            attempts = [_Attempt() for _ in range(300)]  # rounds until a collection ran on the timer's thread
            for attempt in attempts:
                watch_node(attempt, 0.0)
            announced = all(attempt.announced.wait(10.0) for attempt in attempts)
    finally:
        gc.set_threshold(*threshold)
        if not enabled:
            gc.disable()
        gc.callbacks.remove(ask_from_the_timer)
        asks.put(None)
        helper.join()
    assert announced
    assert watched_during_a_copy, (
        f"no collection ran on the timer's thread: the test proves nothing (young objects {gc.get_count()[0]}, "
        "many when no thread can collect: one is blocked inside a collection)"
    )
    assert all(attempt.announced.wait(10.0) for attempt in watched_during_a_copy)
    late = _Attempt()
    watch_node(late, 0.0)
    assert late.announced.wait(10.0), "the timer ended"


def test_a_copy_of_the_watched_attempts_that_fails_is_taken_again(monkeypatch: pytest.MonkeyPatch) -> None:
    """Should copying the watched attempts fail (a dict changed midway), the timer copies them again and carries on."""

    class _FailsOnce(dict[int, tuple[_heartbeat.Announced, float]]):
        failed = False

        def copy(self) -> dict[int, tuple[_heartbeat.Announced, float]]:
            if not self.failed:
                self.failed = True
                raise RuntimeError("dictionary changed size during iteration")
            return dict(self)

    watched = _FailsOnce()
    monkeypatch.setattr(_heartbeat, "_nodes", watched)
    attempt = _Attempt()
    watch_node(attempt, 0.0)
    assert attempt.announced.wait(10.0), "the timer ended"
    assert watched.failed
