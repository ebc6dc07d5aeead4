"""The pipeline's after-commit step over a committed batch: every SEND of the batch is
acked in order, even when the lists or a push fail for one of its messages (each failure
logged), and the timed SENDs reach the latency histogram."""
from __future__ import annotations

import logging
import time

from edgeim.backends.protocols import ConvId, StoredMessage, UserId
from edgeim.core_ext.errors import FrameError
from edgeim.core_ext.frames import ack_frame
from edgeim.services.pipeline import Pipeline


class _Origin:
    def __init__(self) -> None:
        self.user_id, self.terminal, self.in_flight = UserId(1), "web", 3
        self.sent: list[bytes] = []

    def send_frame(self, frame: bytes) -> None:
        self.sent.append(frame)

    def fail(self, op: int, req_id: int, exc: BaseException) -> None:
        raise AssertionError(f"not expected: {exc}")


class _Lists:
    def __init__(self) -> None:
        self.seen: list[int] = []

    def committed(self, stored: StoredMessage) -> None:
        if stored.seq == 1:
            raise RuntimeError("a bug in the lists")
        self.seen.append(stored.seq)


class _Delivery:
    def __init__(self) -> None:
        self.pushed: list[int] = []

    def to_users(self, frame: bytes, users, skip_user, skip_terminal, message=None) -> None:
        if message.seq == 2:
            raise RuntimeError("a bug in a push")
        if message.seq == 4:
            raise FrameError("too large")
        self.pushed.append(message.seq)


def test_a_failing_list_update_or_push_costs_no_other_message_its_ack(caplog) -> None:
    lists, delivery, origin = _Lists(), _Delivery(), _Origin()
    pipeline = Pipeline(None, lists, delivery)  # type: ignore[arg-type]  # the store is not used here
    stored = [StoredMessage(10 + seq, ConvId("p1_2"), seq, UserId(1), 2, f"c{seq}", 1, "hi", 5) for seq in (1, 2, 3)]

    pipeline.on_committed([((origin, seq, 0.0), m, None) for seq, m in enumerate(stored, 1)])

    assert origin.sent == [ack_frame(n, m) for n, m in enumerate(stored, 1)]
    assert origin.in_flight == 0 and pipeline.acked == 3
    assert lists.seen == [2, 3] and delivery.pushed == [1, 3]
    logged = [(r.levelno, r.getMessage(), r.conv, r.seq) for r in caplog.records if r.name == "edgeim.pipeline"]
    assert logged == [(logging.ERROR, "the lists could not follow a message", "p1_2", 1),
                      (logging.ERROR, "a push failed", "p1_2", 2)]
    assert all(r.exc_info for r in caplog.records if r.name == "edgeim.pipeline")


def test_a_message_too_large_to_push_is_acked_and_a_warning(caplog) -> None:
    delivery, origin = _Delivery(), _Origin()
    pipeline = Pipeline(None, _Lists(), delivery)  # type: ignore[arg-type]
    big = StoredMessage(14, ConvId("p1_2"), 4, UserId(1), 2, "c4", 1, "hi", 5)

    pipeline.on_committed([((origin, 7, 0.0), big, None)])

    assert origin.sent == [ack_frame(7, big)] and delivery.pushed == []
    assert [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "edgeim.pipeline"] == \
        [(logging.WARNING, "a message is too large to push")]


def test_the_timed_sends_of_a_batch_reach_the_latency_histogram() -> None:
    origin = _Origin()
    pipeline = Pipeline(None, _Lists(), _Delivery())  # type: ignore[arg-type]
    stored = [StoredMessage(20 + seq, ConvId("p1_2"), seq, UserId(1), 2, f"t{seq}", 1, "hi", 5) for seq in (5, 6, 7)]
    began = time.perf_counter() - 0.003  # two timed SENDs, 3 ms ago; one untimed (0.0)

    pipeline.on_committed([((origin, 1, began), stored[0], None), ((origin, 2, 0.0), stored[1], None),
                           ((origin, 3, began), stored[2], None)])

    histogram = pipeline.send_latency
    assert histogram.count == 2
    assert 0.006 <= histogram.sum < 10  # two waits of at least 3 ms each
    assert histogram.counts[0] == 0 and histogram.counts[1] == 0  # none under 1 ms
