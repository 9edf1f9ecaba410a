"""`henvis centre add-user` and `henvis centre purge` as an operator runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import sqlalchemy as sa

from henvis.db import migrate
from henvis.services.centre import database, store_intake, store_outcomes, store_users
from henvis.services.centre.auth import verify_password
from henvis.services.centre.models import referrals
from tests.centre_fakes import KEY_STORE_TOKENS, KEYS, key_store_over_http, referral_issued


def _henvis(*args: str, database_url: str, stdin: str = "", **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "henvis.cli", "centre", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env={**os.environ, "HENVIS_CENTRE_DATABASE_URL": database_url, **env},
        timeout=120,
    )


def test_add_user_hashes_the_password_and_refuses_weak_input(tmp_path):
    url = f"sqlite:///{tmp_path / 'centre.db'}"
    made = _henvis(
        "add-user",
        "--centre",
        "herning",
        "--username",
        "anne.herning",
        "--password-stdin",
        database_url=url,
        stdin="lang-nok-adgangskode\n",
    )
    assert made.returncode == 0 and "created user anne.herning for centre herning" in made.stdout
    engine = database.make_centre_engine(url)
    user = store_users.get_user(engine, "anne.herning")
    assert user.centre == "herning" and "lang-nok-adgangskode" not in user.password_hash
    assert verify_password(user.password_hash, "lang-nok-adgangskode")

    short = _henvis(
        "add-user", "--centre", "herning", "--username", "bo", "--password-stdin", database_url=url, stdin="kort\n"
    )
    assert short.returncode == 2 and "at least 12 characters" in short.stderr
    unknown = _henvis(
        "add-user",
        "--centre",
        "aarhus",
        "--username",
        "cai",
        "--password-stdin",
        database_url=url,
        stdin="lang-nok-adgangskode\n",
    )
    assert unknown.returncode == 2 and "unknown centre" in unknown.stderr
    engine.dispose()


def test_purge_command_erases_closed_referrals_after_the_retention(tmp_path):
    url = f"sqlite:///{tmp_path / 'centre.db'}"
    migrate(url, "centre")
    engine = database.make_centre_engine(url)
    closed, still_open = referral_issued("herning"), referral_issued("herning", person_index=1)
    for event in (closed, still_open):
        store_intake.ingest_issued(engine, event, "herning")
    store_outcomes.record_outcome(
        engine,
        centre="herning",
        referral_id=str(closed.referral_id),
        outcome="declined_by_person",
        actor="anne.herning",
        actor_kind="user",
    )

    unconfigured = _henvis("purge", database_url=url, HENVIS_CENTRE_RETENTION_DAYS="0")
    assert unconfigured.returncode == 2 and "HENVIS_CENTRE_KEY_STORE_URL" in unconfigured.stderr
    with key_store_over_http() as key_store:
        keys_env = {
            "HENVIS_CENTRE_KEY_STORE_URL": key_store,
            "HENVIS_CENTRE_KEY_STORE_TOKENS": json.dumps(KEY_STORE_TOKENS),
            "HENVIS_CENTRE_CENTRES": "herning,holstebro",
        }
        kept = _henvis("purge", database_url=url, **keys_env)  # default retention: 90 days
        assert kept.returncode == 0 and "erased contact details of 0 referral(s)" in kept.stdout
        purged = _henvis("purge", database_url=url, HENVIS_CENTRE_RETENTION_DAYS="0", **keys_env)
        assert purged.returncode == 0 and "erased contact details of 1 referral(s)" in purged.stdout
    with engine.connect() as conn:
        names = dict(conn.execute(sa.select(referrals.c.referral_id, referrals.c.personal_sealed)).all())
    assert names[str(closed.referral_id)] is None and names[str(still_open.referral_id)] is not None
    assert KEYS.fetch("herning", str(closed.referral_id)) is None  # its key destroyed first
    assert KEYS.fetch("herning", str(still_open.referral_id)) is not None
    engine.dispose()
