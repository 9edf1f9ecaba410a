"""henvis: consent decisions from the police to the right rusmiddelcenter, and figures for researchers.

The shared core lives here (settings, logging, metrics, Kafka, SQL, the centre registry);
the event contract lives in ``henvis.schemas`` (folder ``schemas/``) and each service in
``henvis.services.<name>`` (folder ``services/<name>/``).
"""

__version__ = "0.1.0"
