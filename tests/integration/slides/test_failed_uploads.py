"""What an upload whose commit failed removes: its own folder, but never one a concurrent
upload of the same bytes has recorded since (the failed commit released the content's lock)."""

from slide_service.slides.service import _discard_unrecorded


async def test_cleanup_after_a_failed_commit_spares_a_folder_a_record_names(slides, svs_bytes):
    slide = await slides.slide(svs_bytes)
    store = slides.app.state.slide_store
    folder = store.folder_for(slide["sha256"])
    async with slides.app.state.database.sessions() as session:
        await _discard_unrecorded(session, store, folder)
    assert (folder / "slide.svs").is_file()
    tile = await slides.client.get(f"/slides/{slide['id']}/dzi", headers=slides.viewer)
    assert tile.status_code == 200


async def test_cleanup_after_a_failed_commit_removes_a_folder_no_record_names(slides, svs_bytes):
    slide = await slides.slide(svs_bytes)
    deleted = await slides.client.delete(f"/slides/{slide['id']}", headers=slides.admin)
    assert deleted.status_code == 204
    store = slides.app.state.slide_store
    folder = store.folder_for(slide["sha256"])
    folder.mkdir(parents=True)  # placed by an upload whose commit then failed
    (folder / "slide.svs").write_bytes(svs_bytes)
    async with slides.app.state.database.sessions() as session:
        await _discard_unrecorded(session, store, folder)
    assert not folder.exists()
