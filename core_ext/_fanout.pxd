# Compiled fanout: the contract other Cython modules ``cimport`` to call it at C speed.
# Same behaviour as the pure-Python twin ``fanout_py.py``.

cpdef Py_ssize_t send_all(object transports, bytes frame) except -1
