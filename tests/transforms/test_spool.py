"""Spooled bodies (transforms/spool.py): in memory below the threshold, in a nameless temporary file above it,
read back byte for byte, and gone when closed or abandoned."""

import pickle

import pytest

from tests.conftest import open_files_under
from transforms import spool
from transforms.spool import BodySink, SpooledBody

DATA = bytes(range(256)) * 40  # 10,240 bytes


def spooled(data: bytes) -> SpooledBody:
    with BodySink(spool_over=0) as sink:
        sink.write(data)
        return sink.result()


def test_a_body_up_to_the_threshold_stays_bytes(spool_dir):
    with BodySink(spool_over=len(DATA)) as sink:
        for i in range(0, len(DATA), 1000):
            sink.write(DATA[i : i + 1000])
        body = sink.result()
    assert body == DATA and isinstance(body, bytes)
    assert open_files_under(spool_dir) == []


def test_without_a_threshold_nothing_is_spooled(spool_dir):
    with BodySink() as sink:
        sink.write(DATA * 100)
        assert sink.result() == DATA * 100


def test_a_body_over_the_threshold_is_spooled_and_read_back_whole(spool_dir, monkeypatch):
    monkeypatch.setattr(spool, "CHUNK_BYTES", 999)  # chunks that do not divide the body
    with BodySink(spool_over=4000) as sink:
        for i in range(0, len(DATA), 1000):
            sink.write(DATA[i : i + 1000])
        body = sink.result()
    assert isinstance(body, SpooledBody) and len(body) == len(DATA)
    assert len(open_files_under(spool_dir)) == 1
    assert b"".join(spool.chunks(body)) == DATA
    assert [len(part) for part in spool.chunks(body)][:2] == [999, 999]
    assert spool.head(body, 300) == DATA[:300] and spool.whole(body) == DATA
    assert spool.reader(body).read() == DATA
    body.close()
    assert body.closed and open_files_under(spool_dir) == []


def test_a_view_skips_bytes_and_readers_keep_their_own_place(spool_dir):
    body = spooled(DATA)
    view = spool.after(body, 3)
    assert len(view) == len(DATA) - 3 and spool.whole(view) == DATA[3:]
    first, second = spool.reader(view), spool.reader(view)
    assert first.read(10) == DATA[3:13]
    assert second.read(5) == DATA[3:8]  # a second reader starts at the start, whatever the first did
    assert first.read(10) == DATA[13:23]
    assert spool.after(body, len(DATA) + 5).head(1) == b""
    body.close()


def test_the_same_functions_read_bytes(spool_dir):
    assert list(spool.chunks(DATA)) == [DATA] and list(spool.chunks(b"")) == []
    assert spool.after(DATA, 3) == DATA[3:] and spool.head(DATA, 4) == DATA[:4]
    assert spool.reader(DATA).read() == DATA and spool.whole(DATA) is DATA
    spool.close(DATA)  # nothing to free


def test_a_sink_left_by_an_exception_deletes_its_file(spool_dir):
    with pytest.raises(RuntimeError), BodySink(spool_over=10) as sink:
        sink.write(DATA)
        assert len(open_files_under(spool_dir)) == 1
        raise RuntimeError("the connection dropped")
    assert open_files_under(spool_dir) == []


def test_a_spooled_body_cannot_leave_its_process(spool_dir):
    body = spooled(DATA)
    with pytest.raises(TypeError, match="one process"):
        pickle.dumps(body)
    body.close()
