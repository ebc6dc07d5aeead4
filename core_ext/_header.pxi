# The frame header's size and the little-endian loads and stores its fields are written
# with: included by the compiled modules that write headers (_codec.pyx, _frames.pyx).

cdef enum:
    _HEADER = 20


cdef inline uint16_t _load_u16(const uint8_t* p) noexcept nogil:
    return <uint16_t>p[0] | (<uint16_t>p[1] << 8)


cdef inline uint32_t _load_u32(const uint8_t* p) noexcept nogil:
    return <uint32_t>p[0] | (<uint32_t>p[1] << 8) | (<uint32_t>p[2] << 16) | (<uint32_t>p[3] << 24)


cdef inline uint64_t _load_u64(const uint8_t* p) noexcept nogil:
    return <uint64_t>_load_u32(p) | (<uint64_t>_load_u32(p + 4) << 32)


cdef inline void _store_u16(uint8_t* p, uint16_t v) noexcept nogil:
    p[0] = <uint8_t>v
    p[1] = <uint8_t>(v >> 8)


cdef inline void _store_u32(uint8_t* p, uint32_t v) noexcept nogil:
    p[0] = <uint8_t>v
    p[1] = <uint8_t>(v >> 8)
    p[2] = <uint8_t>(v >> 16)
    p[3] = <uint8_t>(v >> 24)


cdef inline void _store_u64(uint8_t* p, uint64_t v) noexcept nogil:
    _store_u32(p, <uint32_t>v)
    _store_u32(p + 4, <uint32_t>(v >> 32))
