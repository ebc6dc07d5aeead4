# Compiled fanout writer: the contract other Cython modules ``cimport`` to call it at C
# speed. Same behaviour as the pure-Python twin ``fanout_py.py``.
from picows.picows cimport WSTransport

cpdef Py_ssize_t write_frames(WSTransport transport, list frames) except -1
