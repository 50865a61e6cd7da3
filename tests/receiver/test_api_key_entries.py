"""The API keys ``serve`` reads: each entry is checked where it is read, and no message shows either side of it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from flowledger._exceptions import ConfigError
from flowledger.receiver._auth import MIN_API_KEY_CHARS, ApiKeys, keys_from_env, load_keys_file, merge_keys

_GOOD = "k3y-for-the-shop-0123"


def _serve(tmp_path: Path, env_keys: str | None, file_text: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run the real ``flowledger serve`` with these keys; it must refuse them before serving (a timeout fails)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWLEDGER_")}
    command = [sys.executable, "-m", "flowledger", "serve", "--db", str(tmp_path / "f.db"), "--port", "0"]
    if env_keys is not None:
        env["FLOWLEDGER_RECEIVER_API_KEYS"] = env_keys
    if file_text is not None:
        (tmp_path / "keys.toml").write_text(file_text)
        command += ["--api-keys", str(tmp_path / "keys.toml")]
    return subprocess.run(command, capture_output=True, text=True, timeout=30, env=env, check=False)


def _one_refusal(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    [line] = result.stderr.strip().splitlines()
    return line


def test_an_entry_written_key_first_by_mistake_never_shows_its_secret(tmp_path: Path) -> None:
    """acme=S3cr3t-Key! puts the secret on the project's side: serve refuses it naming entry 2 of the variable,
    says to swap the sides, and shows neither side (before: the secret, quoted as a project name)."""
    line = _one_refusal(_serve(tmp_path, f"{_GOOD}=shop,acme=S3cr3t-Key!"))
    assert line.startswith("error: the project of entry 2 of FLOWLEDGER_RECEIVER_API_KEYS is not a valid project")
    assert "swap its two sides" in line
    assert "S3cr3t" not in line
    assert "acme" not in line
    assert not (tmp_path / "f.db").exists()


@pytest.mark.parametrize(
    ("env_keys", "file_text", "place"),
    [
        ("shop=S3cr3tKey9", None, "entry 1 of FLOWLEDGER_RECEIVER_API_KEYS"),
        (None, f'# keys\n[keys]\n"{_GOOD}" = "bank"\n"shop" = "S3cr3tKey9"\n', "entry 2 of [keys] in the API key file"),
    ],
)
def test_a_project_name_where_the_key_goes_is_refused(
    tmp_path: Path, env_keys: str | None, file_text: str | None, place: str
) -> None:
    """shop=S3cr3tKey9 (reversed; the secret happens to be a valid project name) is refused as a key too short to
    be a secret, from the variable and from the file (with its line), instead of serving with 'shop' as the key."""
    line = _one_refusal(_serve(tmp_path, env_keys, file_text))
    assert line.startswith(f"error: the key of {place}")
    assert f"shorter than {MIN_API_KEY_CHARS} characters" in line
    assert "swap its two sides" in line
    assert "secrets.token_urlsafe" in line
    if file_text is not None:
        assert line.split(" is shorter", 1)[0].endswith("(line 4)")
    assert "S3cr3tKey9" not in line
    assert "shop" not in line.replace("import secrets", "")
    assert not (tmp_path / "f.db").exists()


def test_a_key_that_is_a_project_is_no_secret(tmp_path: Path) -> None:
    """A long key that is also an entry's project (the variable's, the file's, or across both) is refused naming
    both entries, never their values."""
    long_name = "shop-production-eu-west"
    with pytest.raises(ConfigError) as caught:
        keys_from_env(f"{_GOOD}={long_name},{long_name}=bank")
    message = str(caught.value)
    assert message.startswith("the key of entry 2 of FLOWLEDGER_RECEIVER_API_KEYS is the project of entry 1 of")
    assert long_name not in message
    path = tmp_path / "keys.toml"
    path.write_text(f'[keys]\n"{long_name}" = "bank"\n')
    with pytest.raises(ConfigError, match="is the project of entry 1 of FLOWLEDGER_RECEIVER_API_KEYS") as crossed:
        merge_keys(keys_from_env(f"{_GOOD}={long_name}"), load_keys_file(path), path)
    assert long_name not in str(crossed.value)
    with pytest.raises(ConfigError) as in_code:
        ApiKeys({_GOOD: long_name, long_name: "bank"})
    assert long_name not in str(in_code.value)


def test_good_keys_still_load_and_bad_projects_in_code_are_not_shown() -> None:
    """Keys of 16 characters or more bound to project names load as before; a key list given in code that has a bad
    project is refused by the key's number, without the project's value."""
    assert keys_from_env(f"{_GOOD}=shop, 0123456789abcdef=bank") == {_GOOD: "shop", "0123456789abcdef": "bank"}
    with pytest.raises(ConfigError) as caught:
        ApiKeys({"short-in-tests": "ok", "tok": "S3cr3t-Key!"})
    assert str(caught.value).startswith("the project of API key 2 is not a valid project name")
    assert "S3cr3t" not in str(caught.value)
