# cython: language_level=3
"""The compiled runs of new messages: the same API, results and errors as the pure-Python
twin ``appends_py.py`` (the reference, which says what each function does;
tests/core_ext/test_appends.py runs one suite on both). Here each is one C loop over the
run: dict and set operations through the C API, the messages' fields read as attributes."""
from cpython.dict cimport PyDict_GetItemWithError, PyDict_SetItem
from cpython.list cimport PyList_Append
from cpython.object cimport PyObject

import msgspec

__all__ = ["unknown", "lay_out", "inserted"]

cdef object _replace = msgspec.structs.replace


def unknown(list run, dict staged, dict hashes, key_hash, stored):
    cdef PyObject* found
    cdef tuple key
    for op in run:
        m = op.message
        if m.reply_to or m.fwd:
            return False
        sender = m.sender
        cmid = m.cmid
        key = (sender, cmid)
        if PyDict_GetItemWithError(staged, key) != NULL:
            return False
        found = PyDict_GetItemWithError(hashes, key)
        if found == NULL:
            h = key_hash(sender, cmid)
            PyDict_SetItem(hashes, key, h)
        else:
            h = <object>found
        if h in stored:
            return False
    return True


def lay_out(list run, conn, current_seq, dict last_seq, dict staged, make, list outcomes, dict touched,
            dict fresh, set known_pairs):
    cdef list values = []
    cdef list new = []
    cdef dict firsts = {}
    cdef PyObject* found
    cdef tuple key
    for op in run:
        m = op.message
        sender = m.sender
        cmid = m.cmid
        key = (sender, cmid)
        found = PyDict_GetItemWithError(firsts, key)
        if found != NULL:
            PyList_Append(outcomes, (op.ticket, _replace(<object>found, duplicate=True), None))
            continue
        conv = m.conv
        found = PyDict_GetItemWithError(last_seq, conv)
        seq = (current_seq(conn, conv) if found == NULL else <object>found) + 1
        PyDict_SetItem(last_seq, conv, seq)
        msg_id = m.msg_id
        to = m.to
        type_ = m.type
        text = m.content
        ts = m.ts
        mentions = m.mentions
        values.extend((msg_id, conv, seq, sender, to, cmid, type_, text, ts, mentions))
        stored = make(msg_id, conv, seq, sender, to, cmid, type_, text, ts, mentions)
        PyDict_SetItem(firsts, key, stored)
        PyDict_SetItem(staged, key, (msg_id, conv, seq))
        PyList_Append(outcomes, (op.ticket, stored, None))
        PyList_Append(new, (m, seq))
    return values, inserted(new, touched, fresh, known_pairs)


cpdef list inserted(list new, dict touched, dict fresh, set known_pairs):
    cdef list later = []
    for m, seq in new:
        conv = m.conv
        PyDict_SetItem(touched, (m.sender, conv), seq)
        PyDict_SetItem(fresh, conv, seq)
        if m.mentions:
            PyList_Append(later, (m, seq))
            continue
        for user in m.members:
            if (user, conv) not in known_pairs:
                PyList_Append(later, (m, seq))
                break
    return later
