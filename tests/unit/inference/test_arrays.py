"""Reading patches sent as a .npy array: what np.save writes is read as a view of the body;
anything else, hostile or mistaken, gets a 4xx that says what is wrong."""

import io
import pickle

import numpy as np
import pytest

from common.errors import ServiceError
from inference_service.serving.arrays import MAX_HEADER_BYTES, read_patch_array


def npy(array: np.ndarray, **options) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, **options)
    return buffer.getvalue()


def refused(body: bytes, max_patches: int = 8, max_side: int = 64) -> ServiceError:
    with pytest.raises(ServiceError) as caught:
        read_patch_array(body, max_patches, max_side)
    return caught.value


def test_what_np_save_writes_is_read_back_exactly_without_a_copy():
    patches = np.random.default_rng(0).integers(0, 256, (5, 48, 40, 3), np.uint8)
    body = npy(patches)
    read = read_patch_array(body, 8, 64)
    assert read.shape == (5, 48, 40, 3) and read.dtype == np.uint8
    assert np.array_equal(read, patches)
    assert not read.flags.owndata  # a view of the body


def test_format_2_0_is_read_too():
    patches = np.full((2, 4, 4, 3), 7, np.uint8)
    header = np.lib.format.header_data_from_array_1_0(patches)
    buffer = io.BytesIO()
    np.lib.format.write_array_header_2_0(buffer, header)
    body = buffer.getvalue() + patches.tobytes()
    assert np.array_equal(read_patch_array(body, 8, 64), patches)


def test_a_pickled_object_array_is_refused_and_never_unpickled():
    class Explodes:
        def __reduce__(self):
            return (pytest.fail, ("unpickled a hostile payload",))

    hostile = np.empty((1, 1, 1, 3), dtype=object)
    hostile[0, 0, 0, 0] = Explodes()
    header = np.lib.format.header_data_from_array_1_0(hostile)
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, header)
    body = buffer.getvalue() + pickle.dumps(hostile)
    error = refused(body)
    assert error.status_code == 422 and "uint8" in error.message


@pytest.mark.parametrize(
    ("array", "words"),
    [
        (np.zeros((2, 8, 8, 3), np.float32), "uint8"),
        (np.zeros((2, 8, 8, 3), np.uint16), "uint8"),
        (np.zeros((8, 8, 3), np.uint8), "shape (n, height, width, 3)"),
        (np.zeros((2, 8, 8, 4), np.uint8), "shape (n, height, width, 3)"),
        (np.zeros((2, 8, 8), np.uint8), "shape (n, height, width, 3)"),
        (np.zeros((0, 8, 8, 3), np.uint8), "1 to 8 patches"),
        (np.zeros((9, 8, 8, 3), np.uint8), "1 to 8 patches"),
        (np.zeros((1, 65, 8, 3), np.uint8), "1 to 64 pixels"),
        (np.zeros((1, 8, 0, 3), np.uint8), "1 to 64 pixels"),
        (np.asfortranarray(np.zeros((2, 8, 8, 3), np.uint8)), "C order"),
    ],
)
def test_an_array_not_as_described_is_refused_with_what_is_wrong(array, words):
    error = refused(npy(array))
    assert error.status_code == 422 and words in error.message


def test_data_shorter_or_longer_than_the_shape_is_refused():
    body = npy(np.zeros((2, 8, 8, 3), np.uint8))
    assert "needs 384" in refused(body[:-1]).message
    assert "needs 384" in refused(body + b"\0").message


def test_a_body_that_is_not_npy_is_refused():
    assert refused(b"\x89PNG\r\n\x1a\n" + bytes(64)).status_code == 422
    assert "not a .npy array" in refused(b"\x93NUMPY\x01").message  # cut in the magic
    assert refused(b"").status_code == 400


def test_a_header_beyond_the_cap_is_refused_before_it_is_parsed():
    shape = "(1, 8, 8, 3)"
    text = "{'descr': '|u1', 'fortran_order': False, 'shape': " + shape + ", }"
    text += " " * (MAX_HEADER_BYTES + 100) + "\n"
    header = text.encode("latin1")
    body = b"\x93NUMPY\x02\x00" + len(header).to_bytes(4, "little") + header + bytes(192)
    error = refused(body)
    assert error.status_code == 422 and "not a .npy array" in error.message


def test_format_3_0_and_unknown_versions_are_refused_by_name():
    body = bytearray(npy(np.zeros((1, 4, 4, 3), np.uint8)))
    body[6] = 3
    assert "version 3.0" in refused(bytes(body)).message
    body[6] = 9
    assert refused(bytes(body)).status_code == 422


def test_a_header_that_is_code_is_refused_without_running_it():
    text = "{'descr': __import__('os').system('false'), 'fortran_order': False, 'shape': (1,)}"
    header = (text + " " * (63 - (len(text) + 10) % 64) + "\n").encode("latin1")
    body = b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header + bytes(3)
    assert refused(body).status_code == 422
