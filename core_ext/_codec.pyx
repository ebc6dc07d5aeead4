# placeholder: replaced by the compiled codec
from .codec_py import encode_frame, decode_frame, decode_request
