"""An overseer's area: a provincial unit covers its province, a district unit its own regencies only."""

from __future__ import annotations

from shared.directory import Jurisdiction


def test_a_provincial_unit_covers_every_regency_of_its_province_and_no_other() -> None:
    province = Jurisdiction(province="61")

    assert province.covers("61.07")
    assert province.covers("61.71")
    assert not province.covers("62.01")
    assert not province.covers("610.1")


def test_a_district_unit_covers_only_its_own_regencies() -> None:
    district = Jurisdiction(province="61", regencies=("61.07",))

    assert district.covers("61.07")
    assert not district.covers("61.01")
