"""API keys in the OS keyring only (never a file, a log line or an error message).

Service name ``griddesk``, user ``<exchange>:api_key`` / ``<exchange>:secret`` (and ``api:token``,
the control API's bearer token; ``telegram:token``, the notifier's bot). Headless runs
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


def telegram_token() -> str:
    """The Telegram bot's token: the keyring's, else GRIDDESK_TELEGRAM_TOKEN; '' when neither."""
    import os

    try:
        token = keyring.get_password(SERVICE, TELEGRAM_TOKEN) or ""
    except KeyringError:
        token = ""
    return token or os.environ.get("GRIDDESK_TELEGRAM_TOKEN", "")


def store_telegram_token(token: str) -> None:
    if not token.strip():
        raise SecretsError("the bot token is empty")
    try:
        keyring.set_password(SERVICE, TELEGRAM_TOKEN, token.strip())
    except NoKeyringError:
        raise SecretsError(f"no usable OS keyring: the bot token cannot be stored. {INSTALL_KEYRING}, or set "
                           "GRIDDESK_TELEGRAM_TOKEN") from None
    except KeyringError as exc:
        raise SecretsError(f"the keyring refused the bot token: {type(exc).__name__}") from None
