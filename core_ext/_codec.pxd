# The compiled frame codec: the contract other Cython modules ``cimport`` to call it at C speed.
# Same API, errors and borrowing rules as the pure-Python twin ``codec_py.py``.

cpdef bytes encode_frame(object op, object req_id, object target, object body, object flags=*)
cpdef tuple decode_frame(object data)
cpdef tuple decode_request(object data)
