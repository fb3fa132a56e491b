"""Writing a directory so that readers see the old one or the complete new one, never a half-written one."""

from __future__ import annotations

import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_directory(target: Path) -> Iterator[Path]:
    """Yield an empty staging directory beside `target`; when the block ends without error it replaces `target`
    by a rename, otherwise it is deleted and `target` is left as it was."""
    target.parent.mkdir(parents=True, exist_ok=True)
    # A plain mkdir, not mkdtemp: the directory gets the usual permissions, not 0700 that hides it from teammates.
    staging = target.parent / f".{target.name}-{secrets.token_hex(4)}.partial"
    staging.mkdir()
    try:
        yield staging
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
