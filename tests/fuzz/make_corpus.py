#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz harnesses into corpus/<harness>/ (small, checked in).

The checkpoint seed (corpus/checkpoint/model.npz) is a checkpoint of the harness's model
(tests/fuzz/fuzz_checkpoint.cpp) saved once by the library's nn::save_checkpoint and checked in as
it is; this script does not make it. The others are made here with NumPy.
"""
import io
import os
import struct
import zipfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def put(harness, name, data):
    folder = os.path.join(HERE, "corpus", harness)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, name), "wb") as f:
        f.write(data)


def idx(dims, data):
    return bytes([0, 0, 8, len(dims)]) + b"".join(struct.pack(">I", d) for d in dims) + bytes(data)


def npy(array, version=None):
    buffer = io.BytesIO()
    if version:
        np.lib.format.write_array(buffer, array, version=version)
    else:
        np.save(buffer, array)
    return buffer.getvalue()


def npz(arrays):
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


for harness in ("idx", "idx_gzip"):
    put(harness, "images", idx([2, 3, 3], range(18)))
    put(harness, "labels", idx([5], [0, 1, 2, 3, 9]))
    put(harness, "truncated", idx([2, 2], [1, 2, 3]))
put("idx", "gzip", __import__("gzip").compress(idx([2, 2, 2], range(8)), mtime=0))

put("csv", "plain", b"x1,x2,y\n1,2,3\n4.5,-6e-1,7\n")
put("csv", "spaces", b" a , b\r\n1 , 2\r\n\r\n3,4\r\n")
put("csv", "bom", b"\xef\xbb\xbfy,a\n1,2\n")

def diabetes(data, target):
    return struct.pack(">H", len(data)) + data + target


gz = lambda b: __import__("gzip").compress(b, mtime=0)
rows = b"59 2 32.1 101.0 157 93.2 38.0 4.0 4.8598 87\n48 1 21.6 87.0 183 103.2 70.0 3.0 3.8918 69\n"
put("diabetes", "plain", diabetes(rows, b"1.5e+02\n7.5e+01\n"))
put("diabetes", "gzip", diabetes(gz(rows), gz(b"1.5e+02\n7.5e+01\n")))
put("diabetes", "short_row", diabetes(b"1 2 3\n", b"1\n"))

put("npy", "f4", npy(np.arange(6, dtype=np.float32).reshape(2, 3)))
put("npy", "f8_scalar", npy(np.array(2.5)))
put("npy", "u1", npy(np.arange(4, dtype=np.uint8)))
put("npy", "version2", npy(np.zeros((2, 2)), version=(2, 0)))

put("npz", "two", npz({"w": np.ones((2, 3), np.float32), "meta/epoch": np.array(3.0)}))
put("npz", "empty_shape", npz({"e": np.zeros((0, 4), np.float32)}))


def safetensors(header, data):
    import json

    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + data


put("safetensors", "two", safetensors(
    {"__metadata__": {"format": "pt"}, "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
     "b": {"dtype": "F64", "shape": [1, 1], "data_offsets": [8, 16]}}, bytes(16)))
put("safetensors", "empty", safetensors({}, b""))
put("safetensors", "half", safetensors({"h": {"dtype": "BF16", "shape": [3], "data_offsets": [0, 6]}},
                                      bytes(6)))


def onnx_models():
    """Small models made with ONNX's helpers (python3-onnx): an MLP with initializers, a
    convolution with attributes, shape arithmetic, a model whose node reads a missing value."""
    from onnx import TensorProto, helper, numpy_helper

    def model(nodes, inputs, outputs, initializers=()):
        graph = helper.make_graph(nodes, "g", inputs, outputs, list(initializers))
        m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        m.ir_version = 8
        return m.SerializeToString()

    f = lambda name, shape: helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)
    w = numpy_helper.from_array(np.ones((3, 2), np.float32), "fc.weight")
    b = numpy_helper.from_array(np.zeros(3, np.float32), "fc.bias")
    put("onnx", "mlp", model([helper.make_node("Gemm", ["x", "fc.weight", "fc.bias"], ["h"], transB=1),
                              helper.make_node("Relu", ["h"], ["y"])],
                             [f("x", ["batch", 2])], [f("y", ["batch", 3])], [w, b]))
    k = numpy_helper.from_array(np.ones((2, 1, 3, 3), np.float32), "conv.weight")
    put("onnx", "conv", model([helper.make_node("Conv", ["x", "conv.weight"], ["c"], pads=[1, 1, 1, 1],
                                                strides=[2, 2]),
                               helper.make_node("MaxPool", ["c"], ["y"], kernel_shape=[2, 2])],
                              [f("x", [1, 1, 6, 6])], [f("y", [1, 2, 1, 1])], [k]))
    shape = numpy_helper.from_array(np.array([0, -1], np.int64), "shape")
    put("onnx", "reshape", model([helper.make_node("Shape", ["x"], ["s"]),
                                  helper.make_node("Reshape", ["x", "shape"], ["y"])],
                                 [f("x", [2, 3, 4])], [f("y", [2, 12])], [shape]))
    put("onnx", "missing", model([helper.make_node("Relu", ["nothing"], ["y"])], [f("x", [1])],
                                 [f("y", [1])]))


onnx_models()
