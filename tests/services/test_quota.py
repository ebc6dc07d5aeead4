"""Per-account budgets on a fake clock: a spent budget outlives the account's last session
until it has refilled, then is dropped; the accounts kept that way are bounded."""
from __future__ import annotations

import pytest

from edgeim.core_ext.errors import RateLimited
from edgeim.services.quota import SendQuota, UserBuckets


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_spent_bucket_is_kept_until_it_is_full_again():
    clock = Clock()
    buckets = UserBuckets(1.0, 3.0, "3 things/s", clock)
    for _ in range(3):
        buckets.charge(7)
    buckets.forget(7)  # the last session left
    with pytest.raises(RateLimited):
        buckets.charge(7)  # back at once: nothing refilled, nothing given back
    buckets.forget(7)
    clock.now += 3  # full again
    buckets.forget(8)  # (any later call lets the ledger drop what is full)

    assert len(buckets) == 0
    buckets.charge(7)  # a fresh, full bucket


def test_a_full_bucket_is_dropped_at_once_and_an_account_back_is_kept():
    clock = Clock()
    buckets = UserBuckets(1.0, 3.0, "3 things/s", clock)
    buckets.charge(1)
    clock.now += 5
    buckets.forget(1)  # already full: nothing to remember
    buckets.charge(2)
    buckets.forget(2)
    buckets.charge(2)  # online again: no longer among those who left
    clock.now += 60
    buckets.forget(3)

    assert len(buckets) == 1  # account 2's, in use


def test_the_accounts_kept_after_leaving_are_bounded_oldest_first():
    clock = Clock()
    quota = SendQuota(1.0, 10, 1000.0, 100_000, clock, max_left=3)
    for user in range(1, 6):
        quota.charge(user, 50_000)
        quota.forget(user)

    assert len(quota) == 3
    with pytest.raises(RateLimited):
        for _ in range(2):
            quota.charge(5, 50_000)  # the newest kept its spent bytes
    quota.charge(1, 90_000)  # the oldest was let go: a full budget


def test_a_message_is_charged_per_member_and_a_refused_one_costs_nothing():
    clock = Clock()
    quota = SendQuota(100.0, 100, 1e9, 10**9, clock, pushes=(10.0, 100.0), push_bytes=(1e9, 10**9))
    quota.charge(1, 10, audience=60)
    with pytest.raises(RateLimited, match="pushes/s"):
        quota.charge(1, 10, audience=60)  # 40 left
    for _ in range(40):  # the refusal took nothing back from the messages or the pushes
        quota.charge(1, 10)
    with pytest.raises(RateLimited):
        quota.charge(1, 10)
    clock.now += 10  # refilled: a group larger than the bucket asks for a full bucket
    quota.charge(1, 10, audience=5000)


def test_the_node_budget_is_shared_by_every_account_and_skips_private_messages():
    clock = Clock()
    quota = SendQuota(100.0, 100, 1e9, 10**9, clock, node_pushes=(100.0, 100.0))
    quota.charge(1, 10, audience=80)
    with pytest.raises(RateLimited, match="node"):
        quota.charge(2, 10, audience=30)
    quota.charge(2, 10, audience=1)  # private: not the node's fan-out
    quota.charge(2, 10, audience=20)


def test_several_messages_at_once_are_charged_all_or_none():
    """A FORWARD's copies: refused, none of them is charged."""
    clock = Clock()
    quota = SendQuota(100.0, 5, 1e9, 10**9, clock, pushes=(10.0, 100.0), push_bytes=(1e9, 10**9),
                      node_pushes=(100.0, 1000.0))
    quota.charge(1, 10)
    quota.charge(1, 10)  # 3 messages left
    with pytest.raises(RateLimited):
        quota.charge_all(1, [10, 10, 10, 10], audience=20)
    quota.charge_all(1, [10, 10, 10], audience=20)  # the refusal took nothing: 3 fit, 60 pushes of 100
    with pytest.raises(RateLimited):
        quota.charge(1, 10)
    clock.now += 10
    with pytest.raises(RateLimited, match="pushes/s"):
        quota.charge_all(1, [10, 10, 10], audience=40)  # 120 pushes: over, and none taken
    quota.charge_all(1, [10, 10], audience=40)
