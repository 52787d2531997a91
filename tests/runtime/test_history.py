"""The history checker of ``runtime.testing`` on hand-made histories: one per anomaly, and a
clean one."""

from __future__ import annotations

import pytest

from runtime.testing import History, ManualClock, check_history


def clean_history() -> History:
    """Two writes acknowledged at t=1 and t=3; reads that see each in time."""
    history = History(ManualClock(start=0.0))
    history.write("w", "k", 1, started=0.5, acked=1.0, ok=True)
    history.read("r", "k", None, started=0.1, finished=0.2)
    history.read("r", "k", 1, started=1.5, finished=1.6)
    history.write("w", "k", 2, started=2.5, acked=3.0, ok=True)
    history.read("r", "k", 2, started=3.5, finished=3.6)
    return history


def test_a_clean_history_is_ok() -> None:
    history = clean_history()
    report = check_history(history, final={"redis": {"k": 2}, "node-a": {"k": 2}})
    assert report.ok, report.summary()
    assert (report.keys, report.writes, report.acknowledged, report.reads) == (1, 2, 2, 3)
    assert report.summary().endswith("-> ok")
    assert History(ManualClock(start=7.0)).now() == 7.0


def test_lost_update_when_the_final_value_is_older_than_an_acknowledged_write() -> None:
    history = clean_history()
    report = check_history(history, final={"redis": {"k": 1}, "node-a": {"k": 2}})
    assert report.lost_updates == 1
    (lost,) = report.examples_of("lost_update")
    assert (lost.key, lost.client) == ("k", "w") and "1 at redis" in lost.detail
    assert report.divergent_keys == 1
    assert not report.ok and "lost updates 1" in report.summary()


def test_a_failed_write_is_never_lost_and_may_win() -> None:
    history = clean_history()
    history.write("w", "k", 3, started=4.0, acked=4.2, ok=False)
    assert check_history(history, final={"redis": {"k": 2}}).ok
    assert check_history(history, final={"redis": {"k": 3}}).ok


def test_stale_read_after_the_bound_but_not_within_it() -> None:
    history = clean_history()
    history.read("late", "k", 1, started=3.2, finished=3.3)  # 0.2 s after 2 was acked
    assert check_history(history, stale_bound_seconds=0.5).ok
    report = check_history(history, stale_bound_seconds=0.1)
    assert (report.stale_reads, report.out_of_order) == (1, 0)
    (stale,) = report.examples_of("stale_read")
    assert stale.client == "late" and "2 was acknowledged" in stale.detail


def test_out_of_order_reads_per_client() -> None:
    history = clean_history()
    history.read("r", "k", 1, started=4.0, finished=4.1)
    history.read("other", "k", 1, started=4.0, finished=4.1)  # its first read: not backwards
    report = check_history(history, stale_bound_seconds=10.0)
    assert (report.out_of_order, report.stale_reads) == (1, 0)
    assert report.examples_of("out_of_order")[0].client == "r"


def test_duplicate_and_out_of_order_deliveries() -> None:
    history = History()
    for value in (1, 2, 2, 3, 1):
        history.deliver("sub", "room", value, at=float(value))
    for value in (1, 2, 3):
        history.write("pub", "room", value, started=0.0, acked=0.0, ok=True)
    report = check_history(history)
    assert (report.duplicates, report.out_of_order, report.deliveries) == (2, 0, 5)
    history.deliver("sub", "room", 4, at=5.0)
    history.deliver("sub2", "room", 3, at=5.0)
    history.deliver("sub2", "room", 2, at=5.1)
    assert check_history(history).out_of_order == 1


def test_phantoms_and_divergence_and_the_example_limit() -> None:
    history = History()
    history.read("r", "k", 99, started=0.0, finished=0.1)
    for n in range(10):
        history.write("w", f"key{n}", 1, started=0.0, acked=0.1, ok=True)
    final = {"redis": {f"key{n}": 1 for n in range(10)}, "node-b": {"k": 98}}
    report = check_history(history, final=final, max_examples=3)
    assert report.phantoms == 2  # the read of 99 and node-b's 98
    assert report.divergent_keys == 11 and len(report.examples_of("divergence")) == 3
    assert report.lost_updates == 10  # node-b has none of key0..key9
    assert report.final_sources == ("redis", "node-b")


def test_writes_must_order_a_key() -> None:
    history = History()
    history.write("a", "k", 1, started=0.0, acked=0.1, ok=True)
    history.write("b", "k", 1, started=0.0, acked=0.1, ok=True)
    with pytest.raises(ValueError, match="several writes of one value"):
        check_history(history)
