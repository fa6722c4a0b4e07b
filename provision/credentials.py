"""The API key and sudo password: read from the environment or a prompt, never from argv, kept out of output."""

from __future__ import annotations

import getpass
import os
from dataclasses import dataclass, field

from yapbench.errors import UserError

API_KEY_ENV = "KYUTAI_API_KEY"
SUDO_PASSWORD_ENV = "YAPBENCH_SUDO_PASSWORD"


@dataclass(frozen=True)
class Secrets:
    """Values that must never reach a command line, a log or the recap."""

    api_key: str | None = field(default=None, repr=False)
    sudo_password: str | None = field(default=None, repr=False)

    def redact(self, text: str) -> str:
        for secret in (self.api_key, self.sudo_password):
            if secret:
                text = text.replace(secret, "***")
        return text

    def require_api_key(self) -> str:
        if not self.api_key:
            raise UserError(f"set {API_KEY_ENV} to the key clients will send "
                            "(it goes into the server's authorized_ids)")
        return self.api_key


def load_secrets(*, ask_sudo_password: bool = False) -> Secrets:
    api_key = os.environ.get(API_KEY_ENV) or None
    if api_key is not None and (any(c.isspace() for c in api_key) or "'" in api_key or '"' in api_key):
        raise UserError(f"{API_KEY_ENV} must not contain spaces or quotes")
    password = os.environ.get(SUDO_PASSWORD_ENV) or None
    if password is None and ask_sudo_password:
        password = getpass.getpass("sudo password for the remote hosts: ") or None
    return Secrets(api_key=api_key, sudo_password=password)
