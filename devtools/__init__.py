"""henvis's development tooling (import name ``henvis_dev``): what no production pod runs.

The project's own local Kafka broker (:mod:`.broker`), the one-command demo (:mod:`.demo`)
with its process supervisor (:mod:`.supervisor`), the seeded replay of the pilot's ten months
(:mod:`.pilot`), and the router's load generator (:mod:`.loadgen`) used by the tests and the
benchmarks.  The runtime (``henvis``, ``henvis.services``, ``henvis.schemas``) never imports
this package (``tests/unit/test_import_rules.py``); its commands (``henvis demo``, ``henvis
broker``) reach the ``henvis`` command through the ``henvis.commands`` entry points.
"""
