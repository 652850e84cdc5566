"""The pure rules: who may do what, decided without a store or HTTP."""

from __future__ import annotations

import pytest

from conveyor.auth.roles import RULES, Principal, Role, Rule, Verdict, decide

ALICE_LEADS_A = Principal("alice", roles={"a": Role.LEAD, "b": Role.VIEWER})


def test_roles_are_ordered_and_parsed_by_name() -> None:
    assert Role.VIEWER < Role.MEMBER < Role.LEAD
    assert Role.parse("Lead") is Role.LEAD
    with pytest.raises(ValueError, match="lead, member, viewer"):
        Role.parse("owner")


def test_public_routes_need_no_one_and_metrics_only_when_made_public() -> None:
    assert decide(RULES["healthz"], None, None) == (Verdict.ALLOW, "")
    assert decide(RULES["prometheus"], None, None)[0] is Verdict.SIGN_IN
    assert decide(RULES["prometheus"], None, None, public_metrics=True)[0] is Verdict.ALLOW
    assert decide(RULES["prometheus"], Principal("bob"), None)[0] is Verdict.ALLOW


def test_a_role_in_the_team_of_the_resource_decides() -> None:
    trigger = RULES["trigger"]
    assert decide(trigger, ALICE_LEADS_A, "a")[0] is Verdict.ALLOW
    verdict, why = decide(trigger, ALICE_LEADS_A, "b")
    assert verdict is Verdict.FORBIDDEN and why == "this needs the role member in team b; you are viewer"
    assert decide(trigger, ALICE_LEADS_A, "c")[0] is Verdict.HIDDEN  # not in team c: as if absent
    assert decide(RULES["get_run"], ALICE_LEADS_A, "b")[0] is Verdict.ALLOW


def test_lists_of_the_project_refuse_rather_than_hide() -> None:
    verdict, why = decide(RULES["list_pipelines"], ALICE_LEADS_A, "c")
    assert verdict is Verdict.FORBIDDEN and "viewer in team c" in why


def test_admins_may_do_everything_and_only_admins_manage_people() -> None:
    root = Principal("root", admin=True)
    assert all(decide(rule, root, None)[0] is Verdict.ALLOW for rule in RULES.values())
    assert decide(RULES["add_team"], ALICE_LEADS_A, None) == (Verdict.FORBIDDEN, "this needs an admin")
    assert decide(RULES["set_quota"], ALICE_LEADS_A, "a")[0] is Verdict.FORBIDDEN  # a lead sets weights only
    assert decide(RULES["set_quota"], ALICE_LEADS_A, "c")[0] is Verdict.HIDDEN
    assert decide(RULES["set_user_weights"], ALICE_LEADS_A, "a")[0] is Verdict.ALLOW


def test_without_a_team_only_admins_see_a_resource() -> None:
    assert not ALICE_LEADS_A.sees(None) and Principal("root", admin=True).sees(None)
    assert decide(RULES["get_run"], ALICE_LEADS_A, None)[0] is Verdict.HIDDEN
    assert ALICE_LEADS_A.visible_teams() == ["a", "b"]
    assert Principal("root", admin=True).visible_teams() is None


def test_anyone_signed_in_is_enough_for_their_own_things() -> None:
    for op in ("list_runs", "list_tokens", "create_token", "whoami", "list_audit"):
        assert RULES[op] == Rule("signed_in") or RULES[op].need == "signed_in"
        assert decide(RULES[op], Principal("nobody"), None)[0] is Verdict.ALLOW
        assert decide(RULES[op], None, None)[0] is Verdict.SIGN_IN
