#!/usr/bin/env python3
"""Writes the reference fixtures used by tests/unit/test_io_safetensors.c and test_io_gguf.c.

Independent of peftc: the layouts are written here with struct + json from the format descriptions
(huggingface/safetensors tensor.rs `prepare`/`serialize`, ggml gguf.h / gguf.cpp), so the C tests compare
peftc's reader and writer against bytes peftc did not produce. Values are simple formulas the C tests
recompute by hand. Run from this directory: python3 make_io_fixtures.py
"""
import json
import struct

# ---------------------------------------------------------------- safetensors
# Reference `enum Dtype` order (increasing alignment); the writer sorts by it descending, then by name.
DTYPE_ORDER = ["BOOL", "F4", "F6_E2M3", "F6_E3M2", "U8", "I8", "F8_E5M2", "F8_E4M3", "F8_E8M0",
               "F8_E4M3FNUZ", "F8_E5M2FNUZ", "I16", "U16", "F16", "BF16", "I32", "U32", "F32", "C64",
               "F64", "I64", "U64"]


def bf16_bits(x):
    (u,) = struct.unpack("<I", struct.pack("<f", x))
    return (u + 0x7FFF + ((u >> 16) & 1)) >> 16  # round to nearest even; inputs are exact anyway


def safetensors_bytes(tensors, metadata):
    """tensors: name -> (dtype, shape, raw bytes)."""
    order = sorted(tensors, key=lambda n: (-DTYPE_ORDER.index(tensors[n][0]), n))
    header = {}
    if metadata:
        header["__metadata__"] = metadata
    offset = 0
    for name in order:
        dtype, shape, raw = tensors[name]
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(raw)]}
        offset += len(raw)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    return struct.pack("<Q", len(text)) + text + b"".join(tensors[n][2] for n in order)


def make_safetensors():
    t = {}
    # w.f32 [2,3]: element i = 0.25*i - 1
    t["w.f32"] = ("F32", [2, 3], struct.pack("<6f", *[0.25 * i - 1 for i in range(6)]))
    # a.bf16 [4]: element i = i + 0.5
    t["a.bf16"] = ("BF16", [4], struct.pack("<4H", *[bf16_bits(i + 0.5) for i in range(4)]))
    # h.f16 [2,2]: f16 of 1, -2, 0.5, 65504
    t["h.f16"] = ("F16", [2, 2], struct.pack("<4e", 1.0, -2.0, 0.5, 65504.0))
    # ids.i64 [3]: -1, 0, 2^40
    t["ids.i64"] = ("I64", [3], struct.pack("<3q", -1, 0, 1 << 40))
    # mask.u8 [5]: 0..4
    t["mask.u8"] = ("U8", [5], bytes(range(5)))
    # scalar.f32 []: 3.0
    t["scalar.f32"] = ("F32", [], struct.pack("<f", 3.0))
    # empty.f32 [0,3]: no bytes
    t["empty.f32"] = ("F32", [0, 3], b"")
    # i.i32 [2]: 7, -7
    t["i.i32"] = ("I32", [2], struct.pack("<2i", 7, -7))
    # d.f64 [1]: 1/3
    t["d.f64"] = ("F64", [1], struct.pack("<d", 1.0 / 3.0))
    return safetensors_bytes(t, {"format": "pt"})


# ---------------------------------------------------------------- GGUF
def gstr(s):
    b = s.encode()
    return struct.pack("<Q", len(b)) + b


def make_gguf():
    align = 64
    kvs = b""
    kvs += gstr("general.architecture") + struct.pack("<i", 8) + gstr("llama")
    kvs += gstr("general.alignment") + struct.pack("<iI", 4, align)
    kvs += gstr("llama.block_count") + struct.pack("<iI", 4, 2)
    kvs += gstr("llama.rope.freq_base") + struct.pack("<if", 6, 10000.0)
    kvs += gstr("general.flag") + struct.pack("<ib", 7, 1)
    kvs += gstr("tokenizer.ggml.tokens") + struct.pack("<iiQ", 9, 8, 3) + gstr("a") + gstr("bc") + gstr("")
    kvs += gstr("tokenizer.ggml.scores") + struct.pack("<iiQ", 9, 6, 3) + struct.pack("<3f", 0.0, -1.0, -2.5)
    kvs += gstr("big.i64") + struct.pack("<iq", 11, -(1 << 40))
    n_kv = 8

    # name, ggml type, ne, data
    tensors = []
    tensors.append(("t.f32", 0, [3, 2], struct.pack("<6f", *[0.5 * i for i in range(6)])))
    tensors.append(("t.f16", 1, [4], struct.pack("<4e", 1.0, 2.0, -3.0, 0.25)))
    # Q8_0: blocks of (f16 scale, 32 x int8); row 0 scale 0.5 q=i-16, row 1 scale 2 q=-i
    q8 = b""
    q8 += struct.pack("<e", 0.5) + struct.pack("<32b", *[i - 16 for i in range(32)])
    q8 += struct.pack("<e", 2.0) + struct.pack("<32b", *[-i for i in range(32)])
    tensors.append(("t.q8", 8, [32, 2], q8))
    # Q4_0: (f16 scale, 16 bytes); byte j holds element j (low nibble) and j+16 (high nibble); value (q-8)*d
    q4 = struct.pack("<e", 1.0) + bytes(((j % 16) | (((15 - j) % 16) << 4)) for j in range(16))
    tensors.append(("t.q4", 2, [32], q4))
    tensors.append(("t.bf16", 30, [2, 2], struct.pack("<4H", *[bf16_bits(x) for x in (1.0, -1.0, 2.0, 0.5)])))

    infos = b""
    offset = 0
    blobs = []
    for name, typ, ne, data in tensors:
        infos += gstr(name) + struct.pack("<I", len(ne)) + struct.pack("<%dq" % len(ne), *ne)
        infos += struct.pack("<iQ", typ, offset)
        pad = (align - len(data) % align) % align
        blobs.append(data + b"\0" * pad)
        offset += len(data) + pad
    head = b"GGUF" + struct.pack("<Iqq", 3, len(tensors), n_kv) + kvs + infos
    head += b"\0" * ((align - len(head) % align) % align)
    return head + b"".join(blobs)


if __name__ == "__main__":
    with open("io_python.safetensors", "wb") as f:
        f.write(make_safetensors())
    with open("io_python.gguf", "wb") as f:
        f.write(make_gguf())
