"""API keys live in the OS keyring only: an in-memory backend for the logic, and the real
Secret Service (gnome-keyring under dbus-run-session) once."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile

import keyring
import pytest
from conftest import ROOT
from keyring.backend import KeyringBackend
from keyring.backends.fail import Keyring as FailKeyring

from app import secrets


class MemoryKeyring(KeyringBackend):
    priority = 1

    def __init__(self):
        super().__init__()
        self.store: dict[tuple[str, str], str] = {}

    def set_password(self, service, username, password):
        self.store[(service, username)] = password

    def get_password(self, service, username):
        return self.store.get((service, username))

    def delete_password(self, service, username):
        self.store.pop((service, username), None)


@pytest.fixture
def memory_keyring(monkeypatch):
    old = keyring.get_keyring()
    kr = MemoryKeyring()
    keyring.set_keyring(kr)
    monkeypatch.delenv("GRIDDESK_BINANCE_API_KEY", raising=False)
    monkeypatch.delenv("GRIDDESK_BINANCE_SECRET", raising=False)
    yield kr
    keyring.set_keyring(old)


def test_keys_round_trip_through_the_keyring_and_never_reach_a_file(memory_keyring, tmp_path):
    assert secrets.load_keys("binance") == ("", "")
    secrets.store_keys("binance", "AKEY123456", "SSECRET7890")
    assert secrets.load_keys("binance") == ("AKEY123456", "SSECRET7890") and secrets.has_keys("binance")
    assert memory_keyring.store[("griddesk", "binance:secret")] == "SSECRET7890"
    from engine.runtime.config import SystemConfig, save_systems

    save_systems(tmp_path / "cryptos.json", [SystemConfig(name="x", mode="live", dry_run=False)])
    assert "SSECRET" not in (tmp_path / "cryptos.json").read_text()
    secrets.forget_keys("binance")
    assert secrets.load_keys("binance") == ("", "")


def test_environment_keys_when_the_keyring_has_none(memory_keyring, monkeypatch):
    monkeypatch.setenv("GRIDDESK_BINANCE_API_KEY", "ENVKEY")
    monkeypatch.setenv("GRIDDESK_BINANCE_SECRET", "ENVSECRET")
    assert secrets.load_keys("binance") == ("ENVKEY", "ENVSECRET")


def test_no_keyring_says_what_to_install():
    old = keyring.get_keyring()
    keyring.set_keyring(FailKeyring())
    try:
        with pytest.raises(secrets.SecretsError, match="gnome-keyring"):
            secrets.store_keys("binance", "k", "s")
    finally:
        keyring.set_keyring(old)


@pytest.mark.skipif(not (shutil.which("dbus-run-session") and shutil.which("gnome-keyring-daemon")),
                    reason="needs dbus and gnome-keyring (make test installs them when root)")
def test_real_secret_service_backend():
    script = (
        "import json, keyring; from app import secrets; "
        "secrets.store_keys('binance', 'REALKEY42', 'REALSECRET42'); "
        "print(json.dumps([type(keyring.get_keyring()).__module__, secrets.load_keys('binance')]))"
    )
    home = tempfile.mkdtemp()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRIDDESK_")} | {"HOME": home}
    cmd = ("echo -n pw | gnome-keyring-daemon --unlock --components=secrets >/dev/null; "
           f"{sys.executable} -c \"{script}\"")
    out = subprocess.run(["dbus-run-session", "--", "sh", "-c", cmd], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    backend, keys = json.loads(out.stdout.strip().splitlines()[-1])
    assert "SecretService" in backend or "secretservice" in backend.lower()
    assert keys == ["REALKEY42", "REALSECRET42"]
    shutil.rmtree(home, ignore_errors=True)
