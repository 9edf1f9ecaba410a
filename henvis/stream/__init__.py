"""The one way a henvis worker consumes a topic: aiokafka, ``read_committed``, public API only.

Two workers share one shell (:class:`StreamWorker`):

* :class:`TransactionalProcessor` (the router): consume, decide, produce, **exactly once**.
  Per batch and input partition, one Kafka transaction holds every output, the state changes
  (a compacted changelog topic partitioned like the input) and the next input offset (a
  reserved record of that changelog).  It commits, or it is abandoned and the partition
  starts again from its changelog: a kill at any moment leaves all of a batch's effects or
  none.  The consumer group's committed offset is a lagging copy, for lag monitoring.
* :class:`IdempotentConsumer` (the stats worker): consume, apply idempotently (by event id,
  in the worker's own database), then commit the input offsets.  At least once from Kafka;
  the database's dedupe makes it exactly once.

**Fencing.**  The processor has one transactional producer per assigned input partition, with
the transactional id ``<group>-<topic>-<partition>``.  A worker that takes a partition starts
that producer first: the broker aborts the previous owner's open transaction and fences its
producer, so a worker paused past its session timeout can never commit for that partition
again.  Only then does it read the partition's state and input offset.  (aiokafka's
``send_offsets_to_transaction`` sends the group id alone, TxnOffsetCommit v0, so fencing by
consumer-group metadata, KIP-447, is not available to it, and the processor no longer uses
it: docs/delivery-guarantees.md.)

Nothing here reads or overrides an underscore-prefixed attribute of aiokafka or kafka-python
(``tests/unit/test_no_private_internals.py`` checks it).
"""

from henvis.stream.idempotent import IdempotentConsumer
from henvis.stream.state import Effects, Logic, Output, StateStore, StateView
from henvis.stream.transactional import TransactionalProcessor
from henvis.stream.worker import EXIT_RESTART, StreamOptions, StreamWorker, run_worker

__all__ = [
    "EXIT_RESTART",
    "Effects",
    "IdempotentConsumer",
    "Logic",
    "Output",
    "StateStore",
    "StateView",
    "StreamOptions",
    "StreamWorker",
    "TransactionalProcessor",
    "run_worker",
]
