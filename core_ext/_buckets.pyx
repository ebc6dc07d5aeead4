# cython: language_level=3
"""Compiled token buckets. Same API and results as the pure-Python twin
``buckets_py.py`` (the reference, which says what they do; tests/core_ext/test_buckets.py
runs one suite on both): the arithmetic in C doubles, ``take_all`` one call for the four
buckets of a SEND."""

__all__ = ["Bucket", "take_all", "give_back"]


cdef class Bucket:
    cdef public double rate, burst, tokens, at
    cdef public bint clamp

    def __init__(self, double rate, double burst, double now, bint clamp=False):
        self.rate, self.burst, self.tokens, self.at, self.clamp = rate, burst, burst, now, clamp

    cdef bint _take(self, double amount, double now) noexcept:
        cdef double tokens = self.tokens + (now - self.at) * self.rate
        if tokens > self.burst:
            tokens = self.burst
        self.at = now
        if self.clamp and amount > self.burst:
            amount = self.burst
        if tokens < amount:
            self.tokens = tokens
            return False
        self.tokens = tokens - amount
        return True

    cdef void _give_back(self, double amount) noexcept:
        if amount > self.burst:
            amount = self.burst
        self.tokens += amount
        if self.tokens > self.burst:
            self.tokens = self.burst

    def take(self, double amount, double now):
        return self._take(amount, now)

    def give_back(self, double amount):
        self._give_back(amount)

    def full_at(self, double now):
        cdef double tokens = self.tokens + (now - self.at) * self.rate
        if tokens > self.burst:
            tokens = self.burst
        return now + (self.burst - tokens) / self.rate


def take_all(buckets, amounts, double now):
    cdef Py_ssize_t i, n = len(buckets)
    cdef object bucket
    for i in range(n):
        bucket = buckets[i]
        if bucket is not None and not (<Bucket?>bucket)._take(amounts[i], now):
            give_back(buckets[:i], amounts)
            return i
    return -1


def give_back(buckets, amounts):
    cdef Py_ssize_t i, n = len(buckets)
    cdef object bucket
    for i in range(n):
        bucket = buckets[i]
        if bucket is not None:
            (<Bucket?>bucket)._give_back(amounts[i])
