"""Which examples share a batch, and in which order the batches come."""

from __future__ import annotations

from engine.train.batching import epoch_batches

SHORT, LONG = 10, 100


def two_lengths(n: int = 60) -> list[int]:
    """Half short, half long examples, interleaved in the file."""
    return [SHORT if i % 2 else LONG for i in range(n)]


def test_batches_mix_short_and_long_examples():
    # Length grouping put only short or only long examples in a batch, and learned less from the
    # same tokens (bench/batch_order.py); a shuffle leaves a one-length batch of 6 a ~3% chance.
    lengths = two_lengths()
    for seed in range(5):
        batches = epoch_batches(lengths, batch_size=6, seed=seed, epoch=0)
        mixed = [b for b in batches if {lengths[i] for i in b} == {SHORT, LONG}]
        assert len(mixed) >= 0.8 * len(batches), (seed, [[lengths[i] for i in b] for b in batches])


def test_every_example_comes_once_and_the_longest_goes_first():
    lengths = [7, 3, 50, 9, 12, 4, 8, 30, 5, 6, 11]
    batches = epoch_batches(lengths, batch_size=3, seed=1, epoch=2)

    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    assert sorted(len(b) for b in batches) == [2, 3, 3, 3]
    assert batches[0][0] == lengths.index(max(lengths))  # an out-of-memory setting fails at step 1
    assert all([lengths[i] for i in b] == sorted((lengths[i] for i in b), reverse=True) for b in batches)


def test_the_order_is_a_function_of_seed_and_epoch():
    lengths = two_lengths()
    assert epoch_batches(lengths, 4, seed=3, epoch=1) == epoch_batches(lengths, 4, seed=3, epoch=1)
    assert epoch_batches(lengths, 4, seed=3, epoch=1) != epoch_batches(lengths, 4, seed=3, epoch=2)
    assert epoch_batches(lengths, 4, seed=3, epoch=1) != epoch_batches(lengths, 4, seed=4, epoch=1)
