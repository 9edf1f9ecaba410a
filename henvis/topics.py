"""``henvis topics create``: make every pipeline topic (personal-data topics with bounded retention)."""

from __future__ import annotations

import argparse

from henvis.kafka import ensure_topics, henvis_topics
from henvis.registry import load_registry
from henvis.settings import KafkaSettings, ServiceSettings


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="henvis topics", description=__doc__)
    parser.add_argument("command", choices=["create", "list"])
    args = parser.parse_args(argv)
    settings = ServiceSettings()
    topics = henvis_topics(KafkaSettings(), load_registry(settings.registry_path))
    if args.command == "list":
        for name, personal in topics.items():
            print(f"{name}\t{'personal data' if personal else 'pseudonymous'}")
        return 0
    created = ensure_topics(KafkaSettings(), topics)
    print(f"{len(created)} topic(s) created, {len(topics) - len(created)} already there.")
    return 0
