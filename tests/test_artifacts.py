"""Return values as artifacts, in a local directory or an fsspec location (an object store)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from conveyor import artifacts
from conveyor.errors import ConveyorError


def test_values_round_trip_in_a_local_directory_given_as_path_or_url(tmp_path: Path) -> None:
    for where in (
        tmp_path / "a",
        str(tmp_path / "b"),
        f"file://{tmp_path / 'c'}",
        Path(f"file://{tmp_path}/d"),
    ):
        plain = artifacts.save({"rows": 3}, where, "i1")
        other = artifacts.save(dt.date(2026, 12, 6), where, "i2")
        assert plain is not None and plain.endswith("i1.json") and Path(plain).is_file()
        assert other is not None and other.endswith("i2.pkl") and Path(other).is_file()
        assert artifacts.load(plain) == {"rows": 3} and artifacts.load(other) == dt.date(2026, 12, 6)
    assert artifacts.save(None, tmp_path, "none") is None


@pytest.mark.slow
def test_values_round_trip_in_an_object_store(s3: str) -> None:
    from s3 import keys, new_bucket

    bucket = new_bucket()
    url = f"s3://{bucket}/conveyor/artifacts/RUN"
    refs = [artifacts.save({"rows": 3}, url, "i1"), artifacts.save(dt.date(2026, 12, 6), Path(url), "i2")]
    assert refs == [f"{url}/i1.json", f"{url}/i2.pkl"]  # a Path folds the URL's //: put back
    assert keys(bucket) == ["conveyor/artifacts/RUN/i1.json", "conveyor/artifacts/RUN/i2.pkl"]
    assert [artifacts.load(r) for r in refs] == [{"rows": 3}, dt.date(2026, 12, 6)]
    with pytest.raises(ConveyorError, match=rf"the artifact {url}/gone.json is missing; re-run"):
        artifacts.load(f"{url}/gone.json")
