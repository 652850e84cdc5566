"""The project the record's end-to-end tests share (made by ``conftest.recorded``)."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Recorded:
    root: Path
    env: dict[str, str]
    demo: str  # the demo's run
    noisy: str  # the nondeterministic pipeline's run

    def cli(self, *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "conveyor", *args],
            cwd=self.root,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    @property
    def db(self) -> Path:
        return self.root / ".conveyor" / "conveyor.db"
