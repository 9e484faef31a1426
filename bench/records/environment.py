"""What a result was measured with: versions, git commit, host, time. Read once per run."""
from __future__ import annotations

import datetime as dt
import os
import platform
import subprocess
import sys


def git_commit(repo_dir: str | None = None) -> str | None:
    repo_dir = repo_dir or os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    try:
        out = subprocess.run(["git", "-C", repo_dir, "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", repo_dir, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5, check=False).stdout.strip()
        return out + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def versions() -> dict:
    """Package versions: a module already imported gives its own __version__; any other is read from its
    installed metadata (importlib.metadata), never imported: importing transformers only to learn its version
    cost every measuring process about 2 s."""
    from importlib import metadata

    out = {"python": platform.python_version()}
    for name in ("torch", "triton", "numpy", "pandas", "transformers"):
        module = sys.modules.get(name)
        if module is not None and getattr(module, "__version__", None):
            out[name] = module.__version__
            continue
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:  # optional packages: absent is a fact to record, not an error
            out[name] = None
    return out


def capture() -> dict:
    from bench import __version__
    return {
        "tokenbench": __version__,
        "git_commit": git_commit(),
        "host": platform.node(),
        "platform": platform.platform(),
        "command": " ".join(sys.argv),
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "versions": versions(),
    }
