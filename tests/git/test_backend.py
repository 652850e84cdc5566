"""The git remote for real: plain ``git`` pushes over HTTP to a real ``conveyor server`` (with its
scheduler child), the runs it starts execute the pushed commit's code, and ``git pull`` brings their
results. One server for the module: a lead and a member of team a, and a viewer."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from api.live import ServerProcess, start_server, wait_for_run
from conftest import Project
from conveyor.auth import people
from conveyor.store import open_store
from gitrepo import ENV

pytestmark = pytest.mark.slow

PIPES = """
from pathlib import Path

from conveyor import pipeline, task

GREETING = "{greeting}"


@task
def report(n: int) -> str:
    out = Path("out")
    out.mkdir(exist_ok=True)
    (out / f"report-{{n}}.txt").write_text(f"{{GREETING}} n={{n}}\\n")
    (out / "big.bin").write_bytes(b"x" * 3000)
    return GREETING


@pipeline
def reports(n: int = 1):
    report(n)
"""

TOML = """[project]
pipelines = ["pipes.py"]
team = "a"

[[push]]
branch = "main"
pipelines = ["reports"]
params = {{ n = {n} }}

[results]
paths = ["out/"]
max_file_size = 1000
"""


@dataclass
class Remote:
    server: ServerProcess
    tokens: dict[str, str]
    clones: Path

    def url(self, who: str | None) -> str:
        host = self.server.url.removeprefix("http://")
        creds = f"{who}:{self.tokens[who]}@" if who else ""
        return f"http://{creds}{host}/git/project.git"

    def http(self, who: str) -> httpx.Client:
        return self.server.client(headers={"Authorization": f"Bearer {self.tokens[who]}"})


def git(cwd: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **ENV, "GIT_TERMINAL_PROMPT": "0", "HOME": str(cwd.parent)}
    done = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    if check and done.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
    return done


def started(push: subprocess.CompletedProcess[str]) -> str:
    """The run id of the push's ``remote: run R started: URL`` line."""
    lines = [
        line for line in push.stderr.splitlines() if line.startswith("remote: run ") and "started" in line
    ]
    assert len(lines) == 1, push.stderr
    return lines[0].split()[2]


@pytest.fixture(scope="module")
def remote(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Remote]:
    base = tmp_path_factory.mktemp("git")
    root = base / "project"
    root.mkdir()
    project = Project(root)
    project.write("conveyor.toml", TOML.format(n=1))
    project.write("pipes.py", PIPES.format(greeting="served"))
    store = open_store(project.db)
    people.add_team(store, "test", "a")
    tokens = {}
    for name, role in (("lead", "lead"), ("member", "member"), ("viewer", "viewer")):
        people.add_user(store, "test", name)
        people.grant(store, "test", "a", name, role)
        tokens[name] = people.create_token(store, "test", name).secret
    store.close()
    server = start_server(project, "--workers", "1")
    clones = base / "clones"
    clones.mkdir()
    try:
        yield Remote(server, tokens, clones)
    finally:
        server.stop()


@pytest.fixture(scope="module")
def lead_clone(remote: Remote) -> Path:
    """The lead's first push: the project's code and configuration, at n = 2."""
    work = remote.clones / "lead"
    work.mkdir()
    git(work, "init", "-q", "-b", "main")
    (work / "conveyor.toml").write_text(TOML.format(n=2))
    (work / "pipes.py").write_text(PIPES.format(greeting="hello"))
    git(work, "add", "-A")
    git(work, "commit", "-q", "-m", "first")
    git(work, "remote", "add", "conveyor", remote.url("lead"))
    return work


def test_a_push_starts_its_run_at_the_pushed_commit_and_a_pull_brings_the_results(
    remote: Remote, lead_clone: Path
) -> None:
    push = git(lead_clone, "push", "conveyor", "main")
    run_id = started(push)
    assert f"{remote.server.url}/#/runs/{run_id}" in push.stderr
    with remote.http("lead") as http:
        run = wait_for_run(http, run_id, timeout=60)
        assert run["state"] == "succeeded", run
        assert run["params"] == {"n": 2}
    commit = git(lead_clone, "rev-parse", "HEAD").stdout.strip()
    assert f"/{commit}/" in run["target"]  # a clean export of the commit, not the server's copy

    found = _results(lead_clone, remote, run_id)
    assert found["out/report-2.txt"] == "hello n=2\n"  # the pushed code, not the server's
    pointer = found["out/big.bin"]
    assert pointer.startswith("conveyor large result v1\n") and "size 3000" in pointer
    url = next(line.split(" ", 1)[1] for line in pointer.splitlines() if line.startswith("get "))
    with remote.http("viewer") as http:
        assert http.get(url).content == b"x" * 3000
    message = git(lead_clone, "log", "-1", "--format=%B", "FETCH_HEAD").stdout
    assert f"run: {run_id}" in message and f"commit: {commit}" in message
    assert 'params: {"n": 2}' in message and "state: succeeded" in message


def _results(clone: Path, remote: Remote, run_id: str, name: str = "conveyor") -> dict[str, str]:
    """The files of results/main once it holds the run's commit (the clerk commits within ~1s)."""
    deadline = time.monotonic() + 30
    while True:
        git(clone, "fetch", "-q", name, "results/main", check=False)
        log = git(clone, "log", "-1", "--format=%B", "FETCH_HEAD", check=False).stdout
        if f"run: {run_id}" in log:
            break
        assert time.monotonic() < deadline, f"no results commit of {run_id}:\n{remote.server.log()[-3000:]}"
        time.sleep(0.5)
    names = git(clone, "ls-tree", "-r", "--name-only", "FETCH_HEAD").stdout.split()
    return {n: git(clone, "show", f"FETCH_HEAD:{n}").stdout for n in names}


def test_a_members_push_runs_their_change_and_git_pull_merges_the_results(
    remote: Remote, lead_clone: Path
) -> None:
    work = remote.clones / "member"
    git(remote.clones, "clone", "-q", remote.url("member"), str(work))
    (work / "pipes.py").write_text(PIPES.format(greeting="bonjour"))
    git(work, "commit", "-q", "-am", "say bonjour")
    run_id = started(git(work, "push", "origin", "main"))
    with remote.http("member") as http:
        assert wait_for_run(http, run_id, timeout=60)["state"] == "succeeded"
    _results(work, remote, run_id, "origin")
    git(work, "pull", "-q", "--no-rebase", "--no-edit", "origin", "results/main")
    assert (work / "out" / "report-2.txt").read_text() == "bonjour n=2\n"


def test_a_members_push_changing_the_configuration_is_refused_with_one_line(remote: Remote) -> None:
    work = remote.clones / "member-config"
    git(remote.clones, "clone", "-q", remote.url("member"), str(work))
    before = git(work, "rev-parse", "HEAD").stdout.strip()
    (work / "conveyor.toml").write_text(TOML.format(n=99))
    git(work, "commit", "-q", "-am", "more n")
    push = git(work, "push", "origin", "main", check=False)
    assert push.returncode != 0
    said = [line.rstrip() for line in push.stderr.splitlines() if line.startswith("remote: ")]
    assert said == [
        "remote: refused: conveyor.toml is the project's configuration, and only a lead of team a may "
        "change it (you are member); ask a lead to push this change"
    ], push.stderr
    assert "! [remote rejected] main -> main (pre-receive hook declined)" in push.stderr
    assert git(work, "ls-remote", "origin", "refs/heads/main").stdout.split()[0] == before


def test_the_lead_changes_a_parameter_and_the_run_takes_it(remote: Remote, lead_clone: Path) -> None:
    git(lead_clone, "pull", "-q", "--no-rebase", "--no-edit", "conveyor", "main")
    (lead_clone / "conveyor.toml").write_text(TOML.format(n=5))
    git(lead_clone, "commit", "-q", "-am", "n = 5")
    run_id = started(git(lead_clone, "push", "conveyor", "main"))
    with remote.http("lead") as http:
        run = wait_for_run(http, run_id, timeout=60)
    assert run["state"] == "succeeded" and run["params"] == {"n": 5}
    assert _results(lead_clone, remote, run_id)["out/report-5.txt"] == "bonjour n=5\n"


def test_without_a_token_no_one_pushes_or_clones(remote: Remote, lead_clone: Path) -> None:
    push = git(lead_clone, "push", remote.url(None), "main:other", check=False)
    assert push.returncode != 0, push.stderr
    assert "could not read Username" in push.stderr or "Authentication failed" in push.stderr, push.stderr
    assert "other" not in git(lead_clone, "ls-remote", "conveyor").stdout  # nothing was pushed
    answer = httpx.get(f"{remote.server.url}/git/project.git/info/refs?service=git-receive-pack")
    assert answer.status_code == 401 and answer.headers["www-authenticate"] == 'Basic realm="Conveyor"'
    assert "your Conveyor token" in answer.text
    with remote.http("viewer") as http:
        assert http.get("/git/project.git/info/refs?service=git-upload-pack").status_code == 200
        refused = http.get("/git/project.git/info/refs?service=git-receive-pack")
    assert refused.status_code == 403
    assert refused.text == "this needs the role member in team a; you are viewer\n"
    by_viewer = git(lead_clone, "push", remote.url("viewer"), "main:other", check=False)
    assert by_viewer.returncode != 0
    assert "remote: this needs the role member in team a; you are viewer" in by_viewer.stderr, (
        by_viewer.stderr
    )


def test_with_no_user_in_the_store_anyone_on_loopback_pushes_and_the_run_waits_for_a_scheduler(
    project: Project, tmp_path: Path
) -> None:
    from api.live import in_thread
    from conveyor import project as projects
    from conveyor.api import create_app
    from conveyor.service import Service

    project.write("conveyor.toml", TOML.format(n=1))
    project.write("pipes.py", PIPES.format(greeting="served"))
    store = open_store(project.db)
    try:
        with in_thread(create_app(Service(store, projects.find(project.root)))) as url:
            work = tmp_path / "anyone"
            work.mkdir()
            git(work, "init", "-q", "-b", "main")
            (work / "conveyor.toml").write_text(TOML.format(n=3))
            (work / "pipes.py").write_text(PIPES.format(greeting="hi"))
            (work / "data.bin").write_bytes(os.urandom(3 * 1024 * 1024))  # past the API's 1 MiB body limit
            git(work, "add", "-A")
            git(work, "commit", "-q", "-m", "first")
            run_id = started(git(work, "push", f"{url}/git/project.git", "main"))
            run = store.get_run(run_id)
            assert run.state == "pending" and run.params == {"n": 3} and run.created_by is None
            missing = httpx.get(f"{url}/git/other.git/info/refs?service=git-upload-pack")
            assert missing.status_code == 404 and "this server's is /git/project.git" in missing.text
            (tmp_path / "secret").write_text("not served")
            outside = httpx.get(f"{url}/git/project.git/%2e%2e/%2e%2e/%2e%2e/secret")
            assert outside.status_code == 404 and "not served" not in outside.text
    finally:
        store.close()
