"""The store's checkpointer and fork: a worker forked while the store was open can fork again
(a task that starts a subprocess with ``preexec_fn``, as pyspark starts Java, or uses
``os.fork``), instead of waiting for ever on the lock its parent held across the fork."""

from __future__ import annotations

import pytest

from conftest import Project

pytestmark = pytest.mark.timeout(120)


def test_a_task_may_fork_and_start_subprocesses_with_preexec_fn(project: Project) -> None:
    project.write(
        "forks.py",
        """
        import os, subprocess, sys
        from conveyor import pipeline, task

        @task
        def spawn(n: int) -> int:
            done = subprocess.run([sys.executable, "-c", "print('child')"], preexec_fn=os.setpgrp,
                                  capture_output=True, text=True, timeout=20)
            pid = os.fork()
            if pid == 0:
                os._exit(7)
            _, status = os.waitpid(pid, 0)
            return len(done.stdout) + os.waitstatus_to_exitcode(status) + n

        @pipeline
        def forks():
            for n in range(4):
                spawn(n)
        """,
    )
    proc = project.cli("run", "forks.py:forks", "--workers", "1", timeout=60, check=True)
    assert "4 succeeded" in proc.stdout
