"""A team's quota is checked when it is built, with the team's name and what to do."""

from __future__ import annotations

import re
from typing import Any

import pytest

from conveyor.errors import DefinitionError
from conveyor.quotas import TeamQuota


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"limits": {"cpu": -1}}, "team 'data': limit cpu=-1 must be a whole number >= 0; leave cpu out"),
        ({"limits": {"memory": 1.5}}, "team 'data': limit memory=1.5 must be a whole number"),
        ({"borrow": {"gpu": -2}}, "team 'data': borrow limit gpu=-2 must be"),
        ({"weight": 0.0}, "team 'data': weight=0.0 must be > 0"),
        ({"weight": -1.0}, "team 'data': weight=-1.0 must be > 0"),
        ({"runs": -1}, "team 'data': runs=-1 must be >= 0"),
        ({"users": {"ann": 0.0}}, "team 'data': user 'ann' has weight 0.0"),
    ],
)
def test_an_invalid_quota_is_refused_naming_the_team(given: dict[str, Any], message: str) -> None:
    with pytest.raises(DefinitionError, match="^" + re.escape(message)):
        TeamQuota("data", **given)


def test_a_quota_with_no_limits_is_valid_and_unlimited() -> None:
    quota = TeamQuota("data")
    assert (quota.limits, quota.runs, quota.weight, quota.borrow, quota.users) == ({}, None, 1.0, {}, {})
