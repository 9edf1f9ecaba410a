"""The consent service: police-facing API, SQL outbox and the relay to Kafka (issue 3)."""
