""".npy inputs: damaged headers, absurd shapes and unsupported dtypes end in one line, in max/avg and explain."""

from __future__ import annotations

import io
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from poolcli import arrays


def crafted_npy(header: str, data: bytes = b"") -> bytes:
    """A version 1.0 .npy file with exactly this header dictionary text (padded as numpy pads)."""
    text = header.encode("latin1")
    text += b" " * (64 - (10 + len(text) + 1) % 64) + b"\n"
    return arrays.NPY_MAGIC + b"\x01\x00" + struct.pack("<H", len(text)) + text + data


def saved(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=True)
    return buffer.getvalue()


BAD_FILES = [
    pytest.param(crafted_npy("{'descr': '<f4', 'fortran_order': False, 'shape': (3, 3"),
                 "damaged .npy header (its dictionary does not parse)", id="unclosed-header"),
    pytest.param(crafted_npy("{'descr': '<f8', 'fortran_order': False, 'shape': (100000, 100000, 100000), }",
                             b"\0" * 16),
                 "truncated .npy data: the header's shape (100000, 100000, 100000) of float64 needs "
                 "8000000000000000 bytes, the file holds 16", id="huge-shape"),
    pytest.param(crafted_npy("{'descr': '<f8', 'fortran_order': False, 'shape': (99999999999999999999999, 2), }"),
                 "truncated .npy data: the header's shape (99999999999999999999999, 2)", id="beyond-int64"),
    pytest.param(crafted_npy("{'descr': '<f8', 'fortran_order': False, 'shape': (-1, 2), }", b"\0" * 16),
                 "damaged .npy header (negative size in shape (-1, 2))", id="negative-shape"),
    pytest.param(crafted_npy("{'descr': '[/]', 'fortran_order': False, 'shape': (2, 2), }", b"\0" * 32),
                 "damaged .npy header (descr is not a valid dtype descriptor: '[/]')", id="markup-descr"),
    pytest.param(arrays.NPY_MAGIC + b"\x01", "damaged .npy header (EOF: reading magic string", id="cut-magic"),
    pytest.param(saved(np.zeros((2, 2), dtype=bool)), "unsupported dtype bool; supported: uint8, int8, uint16, "
                 "int16, uint32, int32, uint64, int64, float16, float32, float64", id="bool"),
    pytest.param(saved(np.zeros((2, 2), dtype=np.complex64)), "unsupported dtype complex64; supported: uint8",
                 id="complex"),
    pytest.param(saved(np.array([[None, 1], [2, 3]], dtype=object)), "unsupported dtype object; supported",
                 id="object"),
    pytest.param(saved(np.zeros((2, 2), dtype="datetime64[s]")), "unsupported dtype datetime64[s]; supported",
                 id="datetime"),
    pytest.param(saved(np.zeros((2, 2), dtype="<U3")), "unsupported dtype str96 (<U3); supported", id="string"),
    pytest.param(saved(np.zeros((2, 2), dtype=[("a", "<i4")])), "unsupported dtype structured [('a', '<i4')]",
                 id="structured"),
    pytest.param(saved(np.zeros(4)), "a .npy input must have shape (H, W), (C, H, W) or (N, C, H, W), not (4,)",
                 id="one-axis"),
]


@pytest.mark.parametrize("data, reason", BAD_FILES)
@pytest.mark.parametrize("command", [["max", "-k", "2"], ["explain", "max", "-k", "2"]], ids=["max", "explain"])
def test_bad_npy_is_one_line_naming_the_fault(invoke, tmp_path, data, reason, command):
    (tmp_path / "bad.npy").write_bytes(data)
    result = invoke(*command, "bad.npy")
    assert result.exit_code == 1
    assert result.stderr.startswith("poolcli: error: bad.npy: ")
    assert reason in result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.npy"]  # nothing written


def test_supported_dtypes_load_as_stored(tmp_path):
    for name in arrays.SUPPORTED_DTYPES:
        for order in "CF":
            array = np.asfortranarray(np.arange(12).reshape(3, 4)) if order == "F" else np.arange(12).reshape(3, 4)
            array = array.astype(name)
            np.save(tmp_path / "a.npy", array)
            loaded = arrays.load_npy(str(tmp_path / "a.npy"))
            assert loaded.dtype == array.dtype and loaded.flags.writeable
            np.testing.assert_array_equal(loaded, array)
    big_endian = np.arange(6, dtype=">f4").reshape(2, 3)
    assert arrays.load_npy(saved(big_endian)).tolist() == big_endian.tolist()


def test_sniffing_by_magic_and_extension(tmp_path):
    (tmp_path / "x.bin").write_bytes(saved(np.zeros((2, 2))))
    (tmp_path / "y.NPY").write_bytes(b"junk")
    (tmp_path / "z.png").write_bytes(b"\x89PNG\r\n")
    assert arrays.is_npy(str(tmp_path / "x.bin")) and arrays.is_npy(str(tmp_path / "y.NPY"))
    assert not arrays.is_npy(str(tmp_path / "z.png"))


@settings(deadline=None)
@given(cut=st.integers(0, 200), flips=st.lists(st.tuples(st.integers(0, 199), st.integers(0, 255)), max_size=6))
def test_mutated_headers_raise_only_array_error(cut, flips):
    """Seeded fuzz: a valid file cut and bit-flipped anywhere either loads or says why in an ArrayError."""
    data = bytearray(saved(np.arange(12, dtype=np.float32).reshape(3, 4)))
    for position, value in flips:
        if position < len(data):
            data[position] = value
    try:
        arrays.load_npy(bytes(data[:len(data) - cut]))
    except arrays.ArrayError as error:
        assert str(error) and "\n" not in str(error)
