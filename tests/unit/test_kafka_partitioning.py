"""henvis picks the partition of a keyed record itself (the router sends whole batches): it
must be the partition Kafka's default partitioner picks, or one key's records could land on
two partitions and lose their order."""

from __future__ import annotations

from aiokafka.partitioner import DefaultPartitioner
from hypothesis import given
from hypothesis import strategies as st

from henvis.kafka import default_partition


@given(key=st.binary(min_size=1, max_size=80), count=st.integers(min_value=1, max_value=64))
def test_a_key_goes_where_kafkas_default_partitioner_puts_it(key, count):
    partitions = list(range(count))

    assert default_partition(key, partitions) == DefaultPartitioner()(key, partitions, partitions)


def test_the_hash_is_the_java_clients():
    # The cases of Kafka's own UtilsTest.testMurmur2 (the Java client's Utils.murmur2, signed).
    from henvis.kafka import _murmur2

    cases = {
        b"21": -973932308,
        b"foobar": -790332482,
        b"a-little-bit-long-string": -985981536,
        b"a-little-bit-longer-string": -1486304829,
        b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
        b"abc": 479470107,
    }
    for key, java in cases.items():
        assert _murmur2(key) == java % 2**32
