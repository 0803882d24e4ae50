"""API keys in the OS keyring only (never a file, a log line or an error message).

Service name ``griddesk``, user ``<exchange>:api_key`` / ``<exchange>:secret`` (and ``api:token``,
the control API's bearer token; ``telegram:token``, the notifier's bot; ``anthropic:api_key``, the
portfolio assistant's). Headless runs
may take keys from GRIDDESK_<EXCHANGE>_API_KEY / _SECRET instead (engine.runtime.runner).
"""

from __future__ import annotations

import contextlib

import keyring
from keyring.errors import KeyringError, NoKeyringError, PasswordDeleteError

from engine.runtime.runner import env_keys

SERVICE = "griddesk"
INSTALL_KEYRING = "On Linux install and unlock a Secret Service (e.g. Debian's gnome-keyring)"
NO_KEYRING = (f"no usable OS keyring: API keys cannot be stored. {INSTALL_KEYRING} or set "
              "GRIDDESK_<EXCHANGE>_API_KEY and GRIDDESK_<EXCHANGE>_SECRET")


class SecretsError(RuntimeError):
    pass


def store_keys(exchange: str, api_key: str, secret: str) -> None:
    if not api_key or not secret:
        raise SecretsError("API key and secret are both needed")
    try:
        keyring.set_password(SERVICE, f"{exchange}:api_key", api_key)
        keyring.set_password(SERVICE, f"{exchange}:secret", secret)
    except NoKeyringError:
        raise SecretsError(NO_KEYRING) from None
    except KeyringError as exc:
        raise SecretsError(f"the keyring refused to store the keys: {type(exc).__name__}") from None


def load_keys(exchange: str) -> tuple[str, str]:
    """Keys from the keyring, else from the environment; ('', '') when there are none."""
    try:
        key = keyring.get_password(SERVICE, f"{exchange}:api_key") or ""
        secret = keyring.get_password(SERVICE, f"{exchange}:secret") or ""
    except KeyringError:
        key = secret = ""
    if key and secret:
        return key, secret
    return env_keys(exchange)


def forget_keys(exchange: str) -> None:
    for name in ("api_key", "secret"):
        with contextlib.suppress(PasswordDeleteError, NoKeyringError):
            keyring.delete_password(SERVICE, f"{exchange}:{name}")


def has_keys(exchange: str) -> bool:
    return all(load_keys(exchange))


API_TOKEN = "api:token"  # the control API's bearer token (engine/runtime/api.py)


def api_token(rotate: bool = False) -> tuple[str, bool]:
    """The control API's token, from the keyring; a new one (32 random bytes, URL-safe) when
    there is none or ``rotate``. Returns (token, new): a new token is for the caller to show
    once; a kept one is never shown again. SecretsError when there is no usable keyring."""
    import secrets as random

    try:
        token = "" if rotate else keyring.get_password(SERVICE, API_TOKEN) or ""
        if token:
            return token, False
        token = random.token_urlsafe(32)
        keyring.set_password(SERVICE, API_TOKEN, token)
    except NoKeyringError:
        raise SecretsError(f"no usable OS keyring: the control API's token cannot be stored. {INSTALL_KEYRING}"
                           ) from None
    except KeyringError as exc:
        raise SecretsError(f"the keyring refused the control API's token: {type(exc).__name__}") from None
    return token, True


TELEGRAM_TOKEN = "telegram:token"  # the notifier's bot token (engine/runtime/notify.py)
ASSISTANT_KEY = "anthropic:api_key"  # the portfolio assistant's Anthropic key (engine/runtime/assistant.py)
ENV = {TELEGRAM_TOKEN: "GRIDDESK_TELEGRAM_TOKEN", ASSISTANT_KEY: "ANTHROPIC_API_KEY"}
WHAT = {TELEGRAM_TOKEN: "the bot token", ASSISTANT_KEY: "the Anthropic API key"}


def load_secret(user: str) -> str:
    """A token of ours (TELEGRAM_TOKEN, ASSISTANT_KEY): the keyring's, else its environment
    variable's; '' when neither has it."""
    import os

    try:
        value = keyring.get_password(SERVICE, user) or ""
    except KeyringError:
        value = ""
    return value or os.environ.get(ENV[user], "")


def store_secret(user: str, value: str) -> None:
    if not value.strip():
        raise SecretsError(f"{WHAT[user]} is empty")
    try:
        keyring.set_password(SERVICE, user, value.strip())
    except NoKeyringError:
        raise SecretsError(f"no usable OS keyring: {WHAT[user]} cannot be stored. {INSTALL_KEYRING}, or set "
                           f"{ENV[user]}") from None
    except KeyringError as exc:
        raise SecretsError(f"the keyring refused {WHAT[user]}: {type(exc).__name__}") from None
