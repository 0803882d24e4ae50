"""A keyring kept in a JSON file named by GRIDDESK_TEST_KEYRING, for tests whose subprocesses
need one keyring between them (``PYTHON_KEYRING_BACKEND=file_keyring.FileKeyring``, tests/ on
the path). The real Secret Service is tested in tests/app/test_secrets.py."""

from __future__ import annotations

import json
import os
from pathlib import Path

from keyring.backend import KeyringBackend


class FileKeyring(KeyringBackend):
    # never chosen on its own: keyring picks the most preferred of every backend class loaded,
    # and a test's import of this one made it the process's default (the tests after it read
    # a keyring file that was not there); it is used where it is named
    priority = -1

    @property
    def _path(self) -> Path:
        return Path(os.environ["GRIDDESK_TEST_KEYRING"])

    def _read(self) -> dict:
        return json.loads(self._path.read_text()) if self._path.exists() else {}

    def get_password(self, service, username):
        return self._read().get(f"{service}/{username}")

    def set_password(self, service, username, password):
        d = self._read()
        d[f"{service}/{username}"] = password
        self._path.write_text(json.dumps(d))

    def delete_password(self, service, username):
        d = self._read()
        d.pop(f"{service}/{username}", None)
        self._path.write_text(json.dumps(d))
