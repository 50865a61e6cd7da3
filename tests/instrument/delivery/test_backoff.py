"""The retry policy of one batch (count and time budget) and the probe schedule while the receiver is down."""

from __future__ import annotations

from flowledger.instrument.delivery._backoff import MIN_ATTEMPT_S, Outage, RetryBudget


def test_budget_grants_retries_until_the_count_is_spent() -> None:
    """With time to spare, exactly ``retries`` waits are granted, each within its full-jitter bound."""
    budget = RetryBudget(3, 100.0)
    waits = [budget.next_wait_s(attempt) for attempt in range(4)]
    assert waits[3] is None
    assert all(w is not None and 0.0 <= w <= 0.1 * 2**i for i, w in enumerate(waits[:3]))


def test_budget_refuses_a_wait_that_would_overrun_it() -> None:
    """A Retry-After longer than what is left of the budget ends the retries; a shorter one is granted."""
    budget = RetryBudget(10, 4.0)
    budget.spend(1.0)
    assert budget.next_wait_s(0, 30.0) is None
    assert budget.next_wait_s(0, 2.0) == 2.0
    assert budget.next_wait_s(1, 1.0 - MIN_ATTEMPT_S / 2) is None


def test_attempt_timeout_is_cut_to_the_remaining_budget() -> None:
    """The next request's timeout never runs past the budget (and never drops below a minimal attempt)."""
    budget = RetryBudget(5, 3.0)
    assert budget.attempt_timeout_s(2.0) == 2.0
    budget.spend(2.5)
    assert budget.attempt_timeout_s(2.0) == 0.5
    budget.spend(5.0)
    assert budget.attempt_timeout_s(2.0) == MIN_ATTEMPT_S


def test_probes_back_off_and_honour_retry_after() -> None:
    """Each failed probe doubles the interval up to the maximum; a Retry-After pushes the probe further out."""
    outage = Outage(1.0, 4.0)
    outage.went_down(100.0)
    assert (outage.down, outage.probe_at) == (True, 101.0)
    outage.went_down(100.0)
    outage.went_down(100.0)
    outage.went_down(100.0)
    assert outage.probe_at == 104.0
    outage.went_down(100.0, at_least_s=30.0)
    assert outage.probe_at == 130.0
    assert not outage.probe_due(129.0)
    assert outage.probe_due(130.0)


def test_recovery_resets_everything() -> None:
    """A success after failures says so once and restores the shortest probe interval."""
    outage = Outage(1.0, 4.0)
    outage.attempt_failed(refused=True)
    outage.went_down(0.0)
    outage.went_down(0.0)
    assert outage.recovered()
    assert (outage.down, outage.failing, outage.unreachable) == (False, False, False)
    assert not outage.recovered()
    outage.went_down(10.0)
    assert outage.probe_at == 11.0
