"""The serving process's own settings: the interpreter's thread switch interval (read, checked, and set by the
function `serve` calls with it)."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest

from flowledger._exceptions import ConfigError
from flowledger.receiver._config import DEFAULT_SWITCH_INTERVAL_S, config_from_env
from flowledger.receiver._server import _tune_switching


@pytest.fixture
def restored_interval() -> Iterator[None]:
    before = sys.getswitchinterval()
    yield
    sys.setswitchinterval(before)


def test_the_switch_interval_comes_from_the_environment_and_the_serving_tune_sets_it(restored_interval: None) -> None:
    assert config_from_env(environ={}).switch_interval_s == DEFAULT_SWITCH_INTERVAL_S
    config = config_from_env(environ={"FLOWLEDGER_RECEIVER_SWITCH_INTERVAL_S": "0.005"})
    assert config.switch_interval_s == 0.005
    _tune_switching(config.switch_interval_s)
    assert sys.getswitchinterval() == pytest.approx(0.005)
    _tune_switching()
    assert sys.getswitchinterval() == pytest.approx(DEFAULT_SWITCH_INTERVAL_S)


@pytest.mark.parametrize("raw", ["0", "-0.001", "1.5", "nan", "inf"])
def test_a_switch_interval_python_would_refuse_or_that_is_no_use_is_refused_by_name(raw: str) -> None:
    with pytest.raises(ConfigError, match=r"SWITCH_INTERVAL_S=.* must be a number more than 0 and at most 1"):
        config_from_env(environ={"FLOWLEDGER_RECEIVER_SWITCH_INTERVAL_S": raw})


def test_a_switch_interval_that_is_not_a_number_is_refused_by_name() -> None:
    with pytest.raises(ConfigError, match="FLOWLEDGER_RECEIVER_SWITCH_INTERVAL_S='fast' is not a number"):
        config_from_env(environ={"FLOWLEDGER_RECEIVER_SWITCH_INTERVAL_S": "fast"})
