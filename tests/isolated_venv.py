"""A fresh virtual environment that sees this checkout's installed packages but installs into itself.

For tests that run ``pip install`` as a user or an image build would (the plugin scaffold, the
Dockerfile's install step) without touching the test environment or fetching every dependency.
"""

from __future__ import annotations

import subprocess
import sys
import sysconfig
from pathlib import Path


def isolated_venv(path: Path, timeout: float = 300) -> Path:
    """Create a venv at ``path`` and return its ``bin`` folder.

    A ``.pth`` line adds the test interpreter's site-packages (the host, its dependencies, pytest)
    with ``site.addsitedir``, so they are importable and count as installed, while ``pip install``
    writes only into the new environment. The line does nothing inside pip's isolated build
    environments (pip sets ``PIP_BUILD_TRACKER`` for them), so a build gets the build requirements
    it asked for rather than this checkout's versions.
    """
    subprocess.run([sys._base_executable, "-m", "venv", str(path)], check=True, timeout=timeout)
    python = path / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True, timeout=60,
    ).stdout.strip()
    ours = sysconfig.get_paths()["purelib"]
    Path(purelib, "letsgo_worker_checkout.pth").write_text(
        f"import os, site; os.environ.get('PIP_BUILD_TRACKER') or site.addsitedir({ours!r})\n"
    )
    return path / "bin"
