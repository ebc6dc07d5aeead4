"""The pipeline's after-commit step over a committed batch: every SEND of the batch is
acked in order, even when the lists or a push fail for one of its messages."""
from __future__ import annotations

from edgeim.backends.protocols import ConvId, StoredMessage, UserId
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
        self.pushed.append(message.seq)


def test_a_failing_list_update_or_push_costs_no_other_message_its_ack() -> None:
    lists, delivery, origin = _Lists(), _Delivery(), _Origin()
    pipeline = Pipeline(None, lists, delivery)  # type: ignore[arg-type]  # the store is not used here
    stored = [StoredMessage(10 + seq, ConvId("p1_2"), seq, UserId(1), 2, f"c{seq}", 1, "hi", 5) for seq in (1, 2, 3)]

    pipeline.on_committed([((origin, seq, 0.0), m, None) for seq, m in enumerate(stored, 1)])

    assert origin.sent == [ack_frame(n, m) for n, m in enumerate(stored, 1)]
    assert origin.in_flight == 0 and pipeline.acked == 3
    assert lists.seen == [2, 3] and delivery.pushed == [1, 3]
