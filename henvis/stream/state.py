"""What a transactional worker's logic decides on and returns: the state it keeps per
partition (:class:`StateStore`, read through a :class:`StateView`) and the :class:`Effects`
of a batch."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

import structlog
from aiokafka.structs import ConsumerRecord

log = structlog.get_logger("henvis.stream")


@dataclass(frozen=True)
class Output:
    """One record to produce inside the batch's transaction (``topic`` is the real name)."""

    topic: str
    key: bytes | None
    value: bytes


V = TypeVar("V")


@dataclass
class Effects(Generic[V]):
    """What a batch (or a timer) decided: outputs, state changes, and what to observe once
    they are committed (metrics, logs)."""

    outputs: list[Output] = field(default_factory=list)
    #: state key -> new value (None deletes the key)
    state: dict[str, V | None] = field(default_factory=dict)
    on_commit: Callable[[], None] | None = None

    def __bool__(self) -> bool:
        return bool(self.outputs or self.state)


class StateStore(Generic[V]):
    """One input partition's state: restored from its changelog, changed only by commits."""

    def __init__(self) -> None:
        self._values: dict[str, V] = {}

    def get(self, key: str) -> V | None:
        return self._values.get(key)

    def items(self) -> Iterable[tuple[str, V]]:
        return list(self._values.items())

    def apply(self, changes: Mapping[str, V | None]) -> None:
        for key, value in changes.items():
            if value is None:
                self._values.pop(key, None)
            else:
                self._values[key] = value

    def __len__(self) -> int:
        return len(self._values)


class StateView(Generic[V]):
    """What a decision sees: the committed state with the decided, not yet committed changes
    of earlier batches on top (they commit first, or the partition starts over)."""

    def __init__(self, store: StateStore[V], pending: Sequence[Mapping[str, V | None]]):
        self._store = store
        self._pending = pending

    def get(self, key: str) -> V | None:
        for changes in reversed(self._pending):
            if key in changes:
                return changes[key]
        return self._store.get(key)

    def items(self) -> Iterable[tuple[str, V]]:
        merged: dict[str, V | None] = dict(self._store.items())
        for changes in self._pending:
            merged.update(changes)
        return [(key, value) for key, value in merged.items() if value is not None]


class Logic(Protocol[V]):
    """What the processor asks of the application (the router's adapter)."""

    def decide(self, partition: int, records: Sequence[ConsumerRecord], state: StateView[V]) -> Effects[V]: ...

    def tick(self, partition: int, state: StateView[V]) -> Effects[V] | None: ...

    def encode_state(self, value: V) -> bytes: ...

    def decode_state(self, raw: bytes) -> V: ...
