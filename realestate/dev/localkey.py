"""A SECRET_KEY for local runs (make run, make test, the benchmarks), kept per checkout.

With DEBUG off the settings refuse the public local key (issue 13), so the local tools, which
all import ``realestate.dev.devdb``, give their processes a key of their own: 50 random
characters made once and kept in ``.local-secret-key`` (git-ignored, mode 0600) beside
``manage.py``, so sessions and widget tokens survive a restart. ``manage.py`` uses the file
when it exists, so plain management commands work in such a checkout too; where it does not
(a production host, which never runs the local tools), the settings' refusal stands. A
SECRET_KEY already in the environment wins.
"""

import os
import secrets
from pathlib import Path

KEY_FILE = Path(__file__).resolve().parents[2] / ".local-secret-key"


def use_local_secret_key(path: Path = KEY_FILE) -> None:
    """Set ``SECRET_KEY`` in ``os.environ`` from ``path``, creating the file if need be,
    unless the environment has one. Child processes inherit it."""
    if os.environ.get("SECRET_KEY"):
        return
    try:
        key = path.read_text().strip()
    except FileNotFoundError:
        key = ""
    if not key:
        key = secrets.token_urlsafe(50)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as file:
            file.write(key + "\n")
    os.environ["SECRET_KEY"] = key
