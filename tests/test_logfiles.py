"""The pieces of ``conveyor.logfiles``: the runner's sink (bytes to the limit, a pipe for child
processes through it) and reading a log's end within a budget."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conveyor import logfiles
from conveyor.logfiles import AttemptLog, cut_marker


def test_the_sink_keeps_bytes_to_the_limit_and_a_pipe_goes_through_it(tmp_path: Path) -> None:
    path = tmp_path / "a" / "1.log"
    log = AttemptLog(str(path), limit=1000)
    log.write("héllo\n")
    fd = log.fileno()  # what a child process writes to
    subprocess.run([sys.executable, "-c", "print('y' * 5000)"], stdout=fd, stderr=fd, check=True)
    log.drain()
    log.write("after the child\n")
    log.close()
    data = path.read_bytes()
    assert data.startswith("héllo\nyyy".encode()) and data.endswith(b"\n" + cut_marker(1000))
    assert len(data) == 1000 + 1 + len(cut_marker(1000))  # cut mid-line: the marker on its own line
    assert log.last_lines(1) == ["after the child"]  # a failed command's error quotes what came last


def test_the_end_of_a_log_is_read_within_its_budget(tmp_path: Path) -> None:
    path = tmp_path / "x.log"
    path.write_bytes(b"".join(b"line %05d\n" % i for i in range(10_000)))  # 110,000 bytes
    assert logfiles.end(str(path), 10**6, 2) == logfiles.End("line 09998\nline 09999\n", True)
    whole = logfiles.end(str(path), 10**6)
    assert not whole.truncated and whole.text.count("\n") == 10_000
    cut = logfiles.end(str(path), 1000)  # its last 1000 bytes, from a line's start
    assert cut.truncated and cut.text.startswith("[conveyor: the log's first 106.5 KiB are not shown]\nline ")
    assert cut.text.endswith("line 09999\n") and len(cut.text) < 1100
    assert logfiles.end(str(tmp_path / "none.log"), 100) == logfiles.End("", False)
