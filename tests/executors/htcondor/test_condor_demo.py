"""The demo pipeline end to end through the HTCondor executor, its jobs run on this machine by a
personal-condor stand-in.

HTCondor's daemons cannot run here (Debian 12 has no HTCondor package; the PyPI wheel is the
client bindings only). ``PersonalSchedd`` does at this boundary what a schedd and a starter on
this machine would do with each submit description, read through HTCondor's own submit parser:
copy ``transfer_input_files`` into a fresh scratch directory, start ``executable`` with
``arguments`` in it, with only the ``environment`` the description gives (HTCondor does not pass
the submitter's), write ``output`` and ``error``, and keep a job ad whose ``JobStatus``,
``ExitCode``, ``RemoteHost`` and custom attributes Conveyor's constraints are evaluated against
with HTCondor's ClassAd evaluator. Everything above it is real: the driver, the execution API on
loopback, the runner reading its token from the transferred file, the store.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from conveyor.executors.choice import Choice

htcondor2 = pytest.importorskip("htcondor2", reason="pip install -e '.[htcondor]' (the test extra has it)")
classad2 = pytest.importorskip("classad2")

pytestmark = pytest.mark.slow
DEMO = str(Path(__file__).parents[3] / "examples" / "sales" / "pipeline.py") + ":daily_sales"


def words(value: str) -> list[str]:
    """A submit-language "new syntax" list: double-quoted as a whole, words split on spaces, a
    word in single quotes may hold spaces ('' is a quote in it), "" is a double quote."""
    text, out, word, quoted, i = value.strip()[1:-1], [], "", False, 0
    while i < len(text):
        c = text[i]
        if c == "'" and quoted and text[i + 1 : i + 2] == "'":
            word, i = word + "'", i + 2
            continue
        if c == '"' and text[i + 1 : i + 2] == '"':
            word, i = word + '"', i + 2
            continue
        if c == "'":
            quoted = not quoted
        elif c in " \t" and not quoted:
            if word:
                out.append(word)
            word = ""
        else:
            word += c
        i += 1
    return [*out, word] if word else out


class PersonalSchedd:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.jobs: dict[int, tuple[Any, subprocess.Popen[bytes]]] = {}
        self.done: list[Any] = []

    def submit(self, description: Any) -> Any:
        d = htcondor2.Submit(str(description))  # what the schedd reads: the submit text
        cluster = len(self.jobs) + len(self.done) + 1
        scratch = self.root / f"execute/dir_{cluster}"
        scratch.mkdir(parents=True)
        for path in d["transfer_input_files"].split(","):
            shutil.copy(path.strip(), scratch)
        env = dict(w.split("=", 1) for w in words(d["environment"]))
        env |= {"PATH": os.environ["PATH"], "_CONDOR_SCRATCH_DIR": str(scratch)}
        with open(d["output"], "wb") as out, open(d["error"], "wb") as err:
            proc = subprocess.Popen(
                [d["executable"], *words(d["arguments"])], cwd=scratch, env=env, stdout=out, stderr=err
            )
        ad = classad2.ClassAd({"ClusterId": cluster, "ProcId": 0, "JobStatus": 2, "NumJobStarts": 1})
        ad["RemoteHost"] = "slot1@personal.condor"
        for k in d:
            if k.startswith("MY."):
                ad[k[3:]] = classad2.ExprTree(d[k]).eval()
        self.jobs[cluster] = (ad, proc)
        return htcondor2.SubmitResult(cluster, 0, 1, classad2.ClassAd(), None)

    def _step(self) -> None:
        for cluster, (ad, proc) in list(self.jobs.items()):
            code = proc.poll()
            if code is None:
                continue
            ad["JobStatus"] = 4 if ad["JobStatus"] != 3 else 3
            ad["ExitBySignal"] = code < 0
            if code < 0:
                ad["ExitSignal"] = -code
            else:
                ad["ExitCode"] = code
            del self.jobs[cluster]
            self.done.append(ad)  # the queue lets it go: it is in the history now

    def query(self, constraint: str, projection: list[str]) -> list[Any]:
        self._step()
        return [ad for ad, _ in self.jobs.values() if classad2.ExprTree(constraint).eval(ad) is True]

    def history(self, constraint: str, projection: list[str], match: int) -> list[Any]:
        self._step()
        return [ad for ad in self.done if classad2.ExprTree(constraint).eval(ad) is True][:match]

    def act(self, action: Any, spec: str) -> None:
        for cluster, (ad, proc) in self.jobs.items():
            if spec in (f"{cluster}.0",) or classad2.ExprTree(spec).eval(ad) is True:
                ad["JobStatus"] = 3
                proc.send_signal(signal.SIGTERM)

    def close(self) -> None:
        for _, proc in self.jobs.values():
            proc.kill()
            proc.wait()


@pytest.fixture
def schedd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    personal = PersonalSchedd(tmp_path / "condor")
    monkeypatch.setattr("conveyor.executors.htcondor.backend.connect", lambda settings: personal)
    yield personal
    personal.close()


def test_the_demo_runs_as_jobs_that_read_their_token_from_the_transferred_file(
    schedd: PersonalSchedd, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from conveyor import engine
    from conveyor.store import open_embedded

    monkeypatch.chdir(tmp_path)
    settings = {"python": sys.executable, "folder": str(tmp_path / "submit"), "poll": 0.2}
    db = f"sqlite:///{tmp_path}/conveyor.db"
    result = engine.run(DEMO, {"days": 1}, db=db, executor=Choice("htcondor", {"htcondor": settings}))
    assert result.state == "succeeded", result.failed
    assert list((tmp_path / "demo-output" / "report").glob("report-*.md"))
    assert len(schedd.done) == 6  # one HTCondor job per task instance
    attempts = open_embedded(db).attempts(result.run_id)
    assert {a.placement for a in attempts} == {"running on slot1@personal.condor"}
    assert not any((tmp_path / "submit").iterdir())  # each job's files, its token first, are gone
