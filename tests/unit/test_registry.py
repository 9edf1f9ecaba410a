"""The centre registry: the eleven centres, loaded from data and refused when wrong."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
import yaml

from henvis.registry import RegistryError, load_registry

DISTRICT = {
    "657": "Herning",
    "661": "Holstebro",
    "665": "Lemvig",
    "671": "Struer",
    "740": "Silkeborg",
    "756": "Ikast-Brande",
    "760": "Ringkøbing-Skjern",
    "773": "Morsø",
    "779": "Skive",
    "787": "Thisted",
    "791": "Viborg",
}


def test_the_packaged_registry_holds_exactly_the_eleven_municipalities():
    registry = load_registry()
    assert {centre.municipality_code: centre.municipality for centre in registry.centres} == DISTRICT
    assert len(set(registry.slugs)) == 11
    assert all(
        registry.for_municipality(code).topic_base == f"referrals.{registry.for_municipality(code).slug}.v2"
        for code in DISTRICT
    )


def test_every_centre_answers_to_its_slug_and_its_sor_id_which_are_marked_placeholders():
    registry = load_registry()
    for centre in registry.centres:
        assert registry.by_slug_or_sor_id(centre.slug) is centre
        assert centre.sor_id == f"999900000000{centre.municipality_code}" and centre.sor_id_placeholder
        assert registry.by_slug_or_sor_id(centre.sor_id) is centre
    assert registry.by_slug_or_sor_id("999900000000751") is None


def test_codes_outside_the_district_have_no_centre():
    assert load_registry().for_municipality("751") is None


def write(tmp_path, data) -> str:
    path = tmp_path / "centres.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return str(path)


def packaged_data() -> dict:
    return load_registry().model_dump(mode="json")


def test_a_changed_topic_or_deadline_is_a_data_change(tmp_path):
    data = packaged_data()
    data["centres"][0]["topic"] = "referrals.herning-new.v2"
    data["centres"][0]["contact_due_working_days"] = 2
    registry = load_registry(write(tmp_path, data))
    herning = registry.by_slug("herning")
    assert herning.topic_base == "referrals.herning-new.v2"
    # Friday 5 March 2021: two working days later is Tuesday 9 March.
    assert herning.contact_due_by(datetime(2021, 3, 5, 12, tzinfo=UTC)) == date(2021, 3, 9)


@pytest.mark.parametrize(
    "breakage,message",
    [
        (lambda d: d["centres"].append(dict(d["centres"][0])), "duplicate"),
        (lambda d: d["centres"][0].update(municipality_code="999"), "not a Danish municipality code"),
        (lambda d: d["centres"][0].update(slug="Herning!"), "slug"),
        (lambda d: d["centres"][0].update(treatment_due_days=0), "treatment_due_days"),
        (lambda d: d["centres"][0].update(unknown_key=1), "unknown_key"),
        (lambda d: d.update(centres=[]), "centres"),
        (lambda d: d["centres"][1].update(sor_id=d["centres"][0]["sor_id"]), "duplicate sor_id"),
        (lambda d: d["centres"][0].update(sor_id="SOR-657"), "sor_id"),
        (lambda d: d["centres"][0].update(sor_id=None), "sor_id_placeholder is set but there is no sor_id"),
    ],
)
def test_a_bad_registry_fails_loudly(tmp_path, breakage, message):
    data = packaged_data()
    breakage(data)
    with pytest.raises(RegistryError) as caught:
        load_registry(write(tmp_path, data))
    assert message in str(caught.value)


def test_an_unreadable_registry_fails_loudly(tmp_path):
    with pytest.raises(RegistryError, match="cannot read"):
        load_registry(tmp_path / "missing.yaml")
    (tmp_path / "broken.yaml").write_text("centres: [", encoding="utf-8")
    with pytest.raises(RegistryError, match="cannot read"):
        load_registry(tmp_path / "broken.yaml")
