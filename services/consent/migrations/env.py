"""Alembic environment of the consent database (``henvis consent migrate``)."""

from henvis.db import run_migrations_online

run_migrations_online()
