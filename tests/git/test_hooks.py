from __future__ import annotations

from pathlib import Path

import pytest

from conveyor.git.hooks import Pusher, post_receive, refusal
from conveyor.git.repo import ZERO
from gitrepo import Work

TOML = '[project]\npipelines = ["pipes.py"]\nconfiguration = ["settings/"]\n'
MEMBER = Pusher("mia", "member", "a")
LEAD = Pusher("lee", "lead", "a")


def test_a_member_may_change_code_but_not_the_configuration(tmp_path: Path) -> None:
    work = Work(tmp_path)
    first = work.commit({"conveyor.toml": TOML, "pipes.py": "x = 1\n", "settings/s.toml": "a = 1\n"})
    code = work.commit({"pipes.py": "x = 2\n"})
    assert refusal(work.repo, MEMBER, first, code, "refs/heads/main") is None
    named = work.commit({"settings/s.toml": "a = 2\n"})
    why = refusal(work.repo, MEMBER, code, named, "refs/heads/main")
    assert why is not None and why.startswith("refused: settings/s.toml is the project's configuration")
    assert "only a lead of team a" in why and "(you are member)" in why and "\n" not in why
    assert refusal(work.repo, LEAD, code, named, "refs/heads/main") is None


def test_a_member_cannot_drop_a_path_from_the_configuration_to_change_it(tmp_path: Path) -> None:
    work = Work(tmp_path)
    first = work.commit({"conveyor.toml": TOML, "settings/s.toml": "a = 1\n"})
    unlisted = '[project]\npipelines = ["pipes.py"]\n'
    sneaky = work.commit({"conveyor.toml": unlisted, "settings/s.toml": "a = 9\n"})
    assert refusal(work.repo, MEMBER, first, sneaky, "refs/heads/main") is not None


def test_a_members_new_branch_is_compared_with_where_it_left_main(tmp_path: Path) -> None:
    work = Work(tmp_path)
    work.commit({"conveyor.toml": TOML, "pipes.py": "x = 1\n"})
    code = work.commit({"pipes.py": "x = 2\n"})
    assert refusal(work.repo, MEMBER, ZERO, code, "refs/heads/feature") is None


def test_the_first_push_of_a_project_needs_a_lead(tmp_path: Path) -> None:
    work = Work(tmp_path)
    sh_first = work.commit({"conveyor.toml": TOML})
    work.repo.run("update-ref", "-d", "refs/heads/main")  # as if nothing had been pushed yet
    assert refusal(work.repo, MEMBER, ZERO, sh_first, "refs/heads/main") is not None
    assert refusal(work.repo, LEAD, ZERO, sh_first, "refs/heads/main") is None


def test_nobody_pushes_to_a_results_branch(tmp_path: Path) -> None:
    work = Work(tmp_path)
    sha = work.commit({"a.txt": "a\n"})
    why = refusal(work.repo, LEAD, ZERO, sha, "refs/heads/results/main")
    assert why is not None and "results branches are written by the server" in why


def test_a_push_to_a_branch_without_push_rules_starts_nothing_and_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    work = Work(tmp_path)
    sha = work.commit({"conveyor.toml": TOML + '\n[[push]]\nbranch = "main"\npipelines = ["reports"]\n'})
    assert post_receive(work.repo, LEAD, [f"{ZERO} {sha} refs/heads/feature"]) == 0
    said = capsys.readouterr().err
    assert said == (
        "conveyor: no [[push]] in conveyor.toml matches branch feature: no run started "
        '(to start runs, add one with branch = "feature")\n'
    )


def test_a_wrong_push_rule_is_one_line_and_the_push_is_kept(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    work = Work(tmp_path)
    sha = work.commit({"conveyor.toml": TOML + '\n[[push]]\npipelines = ["reports"]\n'})
    assert post_receive(work.repo, LEAD, [f"{ZERO} {sha} refs/heads/main"]) == 0
    said = capsys.readouterr().err.splitlines()
    assert said == [
        f"conveyor: main at {sha[:12]}: nothing started: "
        'conveyor.toml: each [[push]] needs a branch, like branch = "main"'
    ]


def test_a_member_may_delete_their_branch_but_not_the_default_one(tmp_path: Path) -> None:
    work = Work(tmp_path)
    sha = work.commit({"conveyor.toml": TOML})
    why = refusal(work.repo, MEMBER, sha, ZERO, "refs/heads/main")
    assert why == "refused: main is the project's default branch; only a lead may delete it"
    assert refusal(work.repo, MEMBER, sha, ZERO, "refs/heads/feature") is None
    assert refusal(work.repo, LEAD, sha, ZERO, "refs/heads/main") is None


def test_a_commit_naming_another_team_starts_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONVEYOR_GIT_TEAM", "a")
    monkeypatch.chdir(tmp_path)
    work = Work(tmp_path)
    toml = '[project]\npipelines = ["pipes.py"]\nteam = "b"\n\n[[push]]\nbranch = "main"\npipelines = ["x"]\n'
    sha = work.commit({"conveyor.toml": toml})
    assert post_receive(work.repo, LEAD, [f"{ZERO} {sha} refs/heads/main"]) == 0
    said = capsys.readouterr().err
    assert said.startswith(f"conveyor: conveyor.toml at {sha[:12]} names team b, but the project this server")
    assert "team a's: no run started" in said and said.count("\n") == 1
