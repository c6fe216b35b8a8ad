#!/usr/bin/env python3
"""Break a valid safetensors file in one controlled way, for the CLI hostile-input catalogue (cli_catalogue.sh).

    st_edit.py FILE drop NAME             remove a tensor (its bytes too)
    st_edit.py FILE add NAME              add an extra 4-float F32 tensor
    st_edit.py FILE dtype NAME DTYPE      relabel a tensor's dtype (same byte size, e.g. F32 -> I32)
    st_edit.py FILE shape NAME D0,D1,...  relabel a tensor's shape (caller keeps the element count)
    st_edit.py FILE poke NAME INDEX VALUE set one F32 element (VALUE: a float, nan, inf)
    st_edit.py FILE truncate FRACTION     keep the first FRACTION of the file's bytes

Only the standard library: the file format is 8 bytes of little-endian header length, a JSON header, data.
The file is rewritten in place (tests work on copies of the goldens)."""
import json
import struct
import sys


def read(path):
    with open(path, "rb") as f:
        raw = f.read()
    n = struct.unpack("<Q", raw[:8])[0]
    return json.loads(raw[8 : 8 + n]), raw[8 + n :]


def write(path, header, tensors):
    """tensors: name -> bytes, laid out in header order with fresh offsets."""
    data = b""
    for name in [k for k in header if k != "__metadata__"]:
        header[name]["data_offsets"] = [len(data), len(data) + len(tensors[name])]
        data += tensors[name]
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + data)


def main(argv):
    path, op, args = argv[1], argv[2], argv[3:]
    if op == "truncate":
        with open(path, "rb") as f:
            raw = f.read()
        with open(path, "wb") as f:
            f.write(raw[: int(len(raw) * float(args[0]))])
        return
    header, data = read(path)
    tensors = {k: data[v["data_offsets"][0] : v["data_offsets"][1]] for k, v in header.items() if k != "__metadata__"}
    name = args[0]
    if op != "add" and name not in tensors:
        sys.exit("st_edit.py: no tensor %r in %s" % (name, path))
    if op == "drop":
        del header[name], tensors[name]
    elif op == "add":
        header[name] = {"dtype": "F32", "shape": [4], "data_offsets": [0, 0]}
        tensors[name] = struct.pack("<4f", 1, 2, 3, 4)
    elif op == "dtype":
        header[name]["dtype"] = args[1]
    elif op == "shape":
        header[name]["shape"] = [int(d) for d in args[1].split(",")]
    elif op == "poke":
        b = bytearray(tensors[name])
        struct.pack_into("<f", b, 4 * int(args[1]), float(args[2]))
        tensors[name] = bytes(b)
    else:
        sys.exit("st_edit.py: unknown operation " + op)
    write(path, header, tensors)


if __name__ == "__main__":
    main(sys.argv)
