"""The error of a strategy setting, shared by every strategy module and the search space."""

from __future__ import annotations


class ParamError(ValueError):
    """A strategy setting is out of range; ``name`` is the setting (CLI argument) at fault,
    ``detail`` what is wrong with it (a settings file names it ``params.<name>``)."""

    def __init__(self, name: str, message: str):
        super().__init__(f"--{name.replace('_', '-')}: {message}")
        self.name = name
        self.detail = message
