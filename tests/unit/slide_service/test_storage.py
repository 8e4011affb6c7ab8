"""The slide store's housekeeping: which leftovers the sweep removes, and putting a folder
back after a failed deletion."""

import os
import time

from slide_service.slides.storage import SlideStore

SHA = "ab" + "0" * 62
HOUR = 3600.0


def _age(path, seconds):
    then = time.time() - seconds
    os.utime(path, (then, then))


def test_the_sweep_removes_idle_leftovers_and_keeps_an_upload_still_being_written(tmp_path):
    store = SlideStore(tmp_path)
    crashed = store.new_upload()
    (crashed.folder / "upload.svs").write_bytes(b"half")
    _age(crashed.folder / "upload.svs", 2 * HOUR)
    _age(crashed.content, 2 * HOUR)
    _age(crashed.folder, 2 * HOUR)
    # A long upload: its folder was made hours ago, but its file was written just now.
    writing = store.new_upload()
    (writing.folder / "upload.svs").write_bytes(b"streaming")
    _age(writing.folder, 2 * HOUR)
    _age(writing.content, 2 * HOUR)
    old_trash = tmp_path / "ab" / f".deleted-{SHA}-1"
    fresh_trash = tmp_path / "ab" / f".deleted-{SHA}-2"
    for trash in (old_trash, fresh_trash):
        trash.mkdir(parents=True)
        (trash / "slide.svs").write_bytes(b"x")
    _age(old_trash / "slide.svs", 2 * HOUR)
    _age(old_trash, 2 * HOUR)

    assert store.sweep_temporary(HOUR) == 2
    assert not crashed.folder.exists() and not old_trash.exists()
    assert (writing.folder / "upload.svs").read_bytes() == b"streaming"
    assert fresh_trash.is_dir()


def test_the_readiness_probe_leaves_nothing_among_the_uploads(tmp_path):
    store = SlideStore(tmp_path)
    store.check_writable()
    assert not store.temp_root.exists() or list(store.temp_root.iterdir()) == []
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_a_set_aside_folder_goes_back_to_its_address(tmp_path):
    store = SlideStore(tmp_path)
    store.folder_for(SHA).mkdir(parents=True)
    (store.folder_for(SHA) / "slide.svs").write_bytes(b"first")
    aside = store.set_aside(SHA)
    assert aside is not None and not store.folder_for(SHA).exists()
    store.restore(aside, SHA)
    assert (store.folder_for(SHA) / "slide.svs").read_bytes() == b"first"


def test_restoring_where_an_upload_of_the_same_bytes_was_placed_keeps_that_one(tmp_path):
    store = SlideStore(tmp_path)
    store.folder_for(SHA).mkdir(parents=True)
    (store.folder_for(SHA) / "slide.svs").write_bytes(b"same")
    aside = store.set_aside(SHA)
    assert aside is not None
    store.folder_for(SHA).mkdir()  # a concurrent upload placed the same content meanwhile
    (store.folder_for(SHA) / "slide.svs").write_bytes(b"same")
    store.restore(aside, SHA)
    assert (store.folder_for(SHA) / "slide.svs").read_bytes() == b"same"
    assert not aside.exists()
