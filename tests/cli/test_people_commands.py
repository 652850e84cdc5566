"""``conveyor users|tokens|teams|audit|login``: on the store itself, and through a server with the
caller's token (``CONVEYOR_TOKEN`` or the credentials file)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

from api.live import make_project, start_server
from conftest import Project


def conveyor(
    project: Project, *args: str, env: dict[str, str] | None = None, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "conveyor", *args],
        cwd=project.root,
        env={**project.env(), "XDG_CONFIG_HOME": str(project.root / "config"), **(env or {})},
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )


def ok(project: Project, *args: str, **kw: Any) -> str:
    out = conveyor(project, *args, **kw)
    assert out.returncode == 0, (args, out.stdout, out.stderr)
    return out.stdout


def test_people_on_the_store_itself_every_change_audited(project: Project) -> None:
    ok(project, "users", "add", "root", "--admin")
    ok(project, "users", "add", "ann")
    created = conveyor(project, "tokens", "create", "ann", "--label", "laptop", "--expires", "30d")
    secret = created.stdout.strip()
    assert secret.startswith("cvy_") and created.stdout == secret + "\n"
    assert "will not be shown again" in created.stderr
    listed = json.loads(ok(project, "tokens", "list", "--user", "ann", "--json"))
    assert [t["label"] for t in listed] == ["laptop"] and secret not in json.dumps(listed)
    assert listed[0]["expires_at"] and listed[0]["last_used_at"] is None
    ok(project, "teams", "add", "analytics", "--weight", "2")
    ok(project, "teams", "grant", "analytics", "ann", "--role", "lead")
    assert json.loads(ok(project, "teams", "members", "analytics", "--json")) == [
        {"user": "ann", "role": "lead"}
    ]
    quota = json.loads(
        ok(
            project,
            *("teams", "quota", "analytics", "--cpu", "8", "--memory", "32GiB", "--gpu", "0"),
            *("--resource", "db=2", "--runs", "10", "--borrow", "cpu=4", "--json"),
        )
    )["quota"]
    assert quota == {
        "limits": {"cpu": 8, "memory": 34359738368, "gpu": 0, "db": 2},
        "runs": 10,
        "borrow": {"cpu": 4},
    }
    users = json.loads(ok(project, "users", "list", "--json"))
    assert [(u["name"], u["admin"]) for u in users] == [("ann", False), ("root", True)]
    ok(project, "tokens", "revoke", listed[0]["id"])
    ok(project, "teams", "revoke", "analytics", "ann")
    ok(project, "users", "disable", "ann")
    audit = json.loads(ok(project, "audit", "--json"))
    assert {a["action"] for a in audit} >= {
        "users.add",
        "tokens.create",
        "tokens.revoke",
        "teams.add",
        "teams.grant",
        "teams.revoke",
        "teams.quota",
        "users.disable",
    }
    assert all(a["actor"].startswith("local:") for a in audit)
    assert [a["action"] for a in json.loads(ok(project, "audit", "--team", "analytics", "--json"))][
        -1
    ] == "teams.add"
    again = conveyor(project, "users", "add", "ann")
    assert again.returncode == 2 and again.stderr.startswith("Error: ") and "exists already" in again.stderr
    bad = conveyor(project, "teams", "grant", "analytics", "root", "--role", "owner")
    assert bad.returncode == 2 and "lead, member or viewer" in bad.stderr


def test_through_a_server_the_token_comes_from_the_environment_or_the_credentials_file(
    project: Project,
) -> None:
    make_project(project)
    project.write("conveyor.toml", '[project]\npipelines = ["pipes.py"]\nteam = "a"\n')
    ok(project, "users", "add", "root", "--admin")
    ok(project, "users", "add", "vic")
    ok(project, "teams", "add", "a")
    ok(project, "teams", "grant", "a", "vic", "--role", "viewer")
    root = ok(project, "tokens", "create", "root").strip()
    vic = ok(project, "tokens", "create", "vic").strip()
    server = start_server(project, "--no-scheduler")
    try:
        url = server.url
        refused = conveyor(project, "runs", "--server", url)
        assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1, refused.stderr
        assert f"set CONVEYOR_TOKEN or run conveyor login --server {url}" in refused.stderr
        ok(project, "runs", "--server", url, env={"CONVEYOR_TOKEN": vic})
        assert json.loads(
            ok(project, "teams", "members", "a", "--server", url, "--json", env={"CONVEYOR_TOKEN": vic})
        )
        weak = conveyor(
            project,
            "teams",
            "grant",
            "a",
            "root",
            "--role",
            "lead",
            "--server",
            url,
            env={"CONVEYOR_TOKEN": vic},
        )
        assert weak.returncode == 2 and "this needs the role lead in team a; you are viewer" in weak.stderr

        said = ok(project, "login", "--server", url, stdin=root + "\n")
        assert "as root" in said
        creds = project.root / "config" / "conveyor" / "credentials.toml"
        assert stat.S_IMODE(os.stat(creds).st_mode) == 0o600 and root in creds.read_text()
        ok(project, "users", "add", "wes", "--server", url)  # as root, from the file
        audit = json.loads(ok(project, "audit", "--server", url, "--json"))
        assert audit[0]["action"] == "users.add" and audit[0]["actor"] == "root"
        mine = json.loads(
            ok(project, "tokens", "list", "--server", url, "--json", env={"CONVEYOR_TOKEN": vic})
        )
        assert {t["user"] for t in mine} == {"vic"}
        bad_login = conveyor(project, "login", "--server", url, stdin="cvy_nope\n")
        assert bad_login.returncode == 2 and "conveyor login" in bad_login.stderr
    finally:
        server.stop()
    assert Path(creds).read_text().count("[servers.") == 1


def test_a_run_submitted_on_the_store_is_its_projects_teams_and_audited(project: Project) -> None:
    make_project(project)
    project.write("conveyor.toml", '[project]\npipelines = ["pipes.py"]\nteam = "analytics"\n')
    run_id = ok(project, "submit", "pipes.py:quick", "-p", "n=3").strip()
    runs = json.loads(ok(project, "runs", "--json"))
    assert [(r["id"], r["team"]) for r in runs if r["id"] == run_id] == [(run_id, "analytics")]
    (row,) = json.loads(ok(project, "audit", "--json"))
    assert row["action"] == "trigger" and row["target"] == run_id and row["team"] == "analytics"
    assert row["actor"].startswith("local:")
