"""Minimal safetensors writer/reader in plain Python (no `safetensors` package here).

Format (huggingface/safetensors README "Format", Rust `prepare`/`read_metadata`):
  u64 little-endian header length N, then N bytes of UTF-8 JSON, then the byte buffer.
  Header: {"__metadata__": {str: str}, name: {"dtype", "shape", "data_offsets": [begin, end)}}
  with offsets relative to the buffer start.  The writer pads the JSON with spaces to a
  multiple of 8 and orders tensors by descending dtype alignment, then by name, so every
  tensor is naturally aligned and the buffer has no holes.  We mirror that exactly so our
  files are byte-for-byte what the Rust writer would produce for the same tensors.
"""
import json
import struct

import torch

# Dtype enum order of safetensors/src/tensor.rs (increasing alignment); the writer
# sorts by this order descending.
_DTYPE_ORDER = ["BOOL", "U8", "I8", "I16", "U16", "F16", "BF16", "I32", "U32", "F32",
                "F64", "I64", "U64"]

_TORCH_TO_ST = {
    torch.float32: "F32",
    torch.bfloat16: "BF16",
    torch.float16: "F16",
    torch.int32: "I32",
    torch.int64: "I64",
    torch.float64: "F64",
}
_ST_TO_TORCH = {v: k for k, v in _TORCH_TO_ST.items()}


def _tensor_bytes(t):
    t = t.detach().contiguous().cpu()
    if t.dtype == torch.bfloat16:
        # numpy has no bfloat16: reinterpret the 2-byte payload as int16.
        return t.view(torch.int16).numpy().tobytes()
    return t.numpy().tobytes()


def serialize(tensors, metadata=None):
    """tensors: dict name -> torch.Tensor.  Returns the file contents as bytes."""
    items = []
    for name, t in tensors.items():
        dtype = _TORCH_TO_ST[t.dtype]
        items.append((name, dtype, list(t.shape), _tensor_bytes(t)))
    items.sort(key=lambda it: (-_DTYPE_ORDER.index(it[1]), it[0]))

    header = {}
    if metadata is not None:
        header["__metadata__"] = dict(metadata)
    offset = 0
    for name, dtype, shape, data in items:
        header[name] = {"dtype": dtype, "shape": shape,
                        "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    text += b" " * ((8 - len(text) % 8) % 8)
    return struct.pack("<Q", len(text)) + text + b"".join(it[3] for it in items)


def write(path, tensors, metadata=None):
    with open(path, "wb") as f:
        f.write(serialize(tensors, metadata))


def read(path):
    """Returns (dict name -> torch.Tensor, metadata).  Used by the self-checks."""
    with open(path, "rb") as f:
        blob = f.read()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n].decode("utf-8"))
    metadata = header.pop("__metadata__", None)
    base = 8 + n
    out = {}
    for name, info in header.items():
        begin, end = info["data_offsets"]
        raw = bytearray(blob[base + begin:base + end])
        dtype = _ST_TO_TORCH[info["dtype"]]
        if dtype == torch.bfloat16:
            t = torch.frombuffer(raw, dtype=torch.int16).view(torch.bfloat16)
        else:
            t = torch.frombuffer(raw, dtype=dtype)
        out[name] = t.reshape(info["shape"]).clone()
    return out, metadata
