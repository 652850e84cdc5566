"""A member of team b sees nothing of team a's runs: not in lists, not by id prefix, not their
logs, results or graphs; an admin sees every run; runs without a team are the admins'."""

from __future__ import annotations

from auth.conftest import World, finished_run


def test_lists_hold_only_the_runs_of_the_callers_teams(world: World) -> None:
    nobody = finished_run(world.service, None, 3)
    with world.client("other") as http:
        assert [r["id"] for r in http.get("/api/v1/runs").json()["items"]] == [world.run_b]
        assert http.get("/api/v1/runs").json()["total"] == 1
    with world.client("viewer") as http:
        ids = {r["id"] for r in http.get("/api/v1/runs", params={"limit": 100}).json()["items"]}
        assert world.run_a in ids and world.run_b not in ids and nobody not in ids
    with world.client("admin") as http:
        ids = {r["id"] for r in http.get("/api/v1/runs", params={"limit": 100}).json()["items"]}
        assert {world.run_a, world.run_b, nobody} <= ids


def test_another_teams_run_is_not_found_by_id_prefix_logs_results_or_graph(world: World) -> None:
    prefix = world.run_a[:-2]
    with world.client("other") as http:
        for path, query in [
            (f"/api/v1/runs/{prefix}", {}),
            (f"/api/v1/runs/{world.run_a}/logs", {}),
            (f"/api/v1/runs/{world.run_a}/result", {"task": "double"}),
            (f"/api/v1/runs/{world.run_a}/graph", {}),
            (f"/api/v1/runs/{world.run_a}/attempts", {}),
        ]:
            answer = http.get(path, params=query)
            assert answer.status_code == 404, (path, answer.text)
        assert http.get(f"/api/v1/runs/{world.run_b[:-2]}").json()["id"] == world.run_b
    with world.client("member") as http:
        assert http.get(f"/api/v1/runs/{prefix}").json()["id"] == world.run_a
        assert http.get(f"/api/v1/runs/{world.run_a}/result", params={"task": "double"}).status_code == 200


def test_a_prefix_shared_with_another_teams_run_finds_the_callers_own(world: World) -> None:
    shared = world.run_a[:9]  # the date: both runs were created today
    assert world.run_b.startswith(shared)
    with world.client("other") as http:
        assert http.get(f"/api/v1/runs/{shared}").json()["id"] == world.run_b
    with world.client("admin") as http:
        assert "ambiguous" in http.get(f"/api/v1/runs/{shared}").json()["detail"]


def test_a_triggered_run_records_its_team_and_creator_and_the_audit_says_who(world: World) -> None:
    with world.client("member") as http:
        run = http.post("/api/v1/pipelines/quick/runs", json={"params": {"n": 11}}).json()
        assert run["team"] == "a" and run["created_by"] == "member"
        audit = http.get("/api/v1/audit").json()
    assert any(a["action"] == "trigger" and a["actor"] == "member" and a["team"] == "a" for a in audit)
    with world.client("other") as http:
        assert not any(a["team"] == "a" for a in http.get("/api/v1/audit").json())


def test_a_backfills_runs_are_the_projects_teams(world: World) -> None:
    with world.client("viewer") as http:
        daily = http.get("/api/v1/runs", params={"pipeline": "daily"}).json()["items"]
    assert daily and {r["team"] for r in daily} == {"a"}
    with world.client("other") as http:
        assert http.get("/api/v1/runs", params={"pipeline": "daily"}).json()["items"] == []


def test_the_schedulers_list_shows_only_the_leases_on_the_callers_runs(world: World) -> None:
    import dataclasses
    import time

    from conveyor import engine
    from conveyor.store.records import SchedulerRecord

    now = time.time()
    ids = {}
    for team, n in (("a", 5), ("b", 6)):  # a submitted run of each team, its partition leased
        entry = world.service.entry("quick")
        run, instances, parts = engine.submission(entry.pipeline, entry.target, {"n": n}, workdir="")
        world.store.create_run(dataclasses.replace(run, team=team), instances, parts)
        ids[team] = run.id
    world.store.register_scheduler(SchedulerRecord("s1", "host", 1, now, now, "running", 2), stale_after=60)
    while world.store.claim("s1", 60) is not None:
        pass

    def leased(who: str) -> set[str]:
        with world.client(who) as http:
            (scheduler,) = http.get("/api/v1/schedulers").json()
        return {lease["run"] for lease in scheduler["leases"]}

    (held,) = [leases for _, leases in world.store.schedulers()]
    teams = {p.run_id: world.store.get_run(p.run_id).team for p in held}  # the world's runs' too
    a = {run for run, team in teams.items() if team == "a"}
    b = {run for run, team in teams.items() if team == "b"}
    assert ids["a"] in a and ids["b"] in b
    assert leased("other") == b
    assert leased("member") == a
    assert leased("admin") == a | b
