"""The fault suite: generated workflows and the receiver driven through kills, bad networks and full disks.

Each scenario (``_scenarios.py``) reports what was produced, stored, lost and
duplicated, the time it added to the workflow and the peak memory of both
sides. ``test_faults.py`` runs them small in CI; ``python3 tasks.py faults``
runs them longer and writes ``RELIABILITY.md`` (``report.py``).
"""
