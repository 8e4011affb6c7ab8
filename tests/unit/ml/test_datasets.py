"""Dataset readers on small trees in each layout, and the refusals of unusable folders."""

from pathlib import Path

import pytest

from ml.datasets import DatasetError, read_dataset
from tests.support.images import breakhis_tree, folders_tree, idc_tree, write_png


def test_idc_layout_gives_label_from_the_folder_and_patient_from_the_parent(tmp_path):
    samples, layout = read_dataset(idc_tree(tmp_path, patients=3, per_class=2))
    assert layout == "idc"
    assert len(samples) == 12
    for sample in samples:
        assert sample.label == int(sample.path.parent.name)
        assert sample.group == sample.path.parent.parent.name


def test_breakhis_names_give_label_and_patient(tmp_path):
    samples, layout = read_dataset(breakhis_tree(tmp_path))
    assert layout == "breakhis"
    by_name = {s.path.name: s for s in samples}
    assert len(samples) == 5  # the README figure is not a BreakHis file
    benign = by_name["SOB_B_A-14-22549AB-40-001.png"]
    assert (benign.label, benign.group) == (0, "14-22549AB")
    lobular = by_name["SOB_M_LC-14-12204-40-011.png"]
    assert (lobular.label, lobular.group) == (1, "14-12204")


def test_class_folders_take_the_patient_from_a_name_prefix(tmp_path):
    samples, layout = read_dataset(folders_tree(tmp_path))
    assert layout == "folders"
    assert {(s.path.name, s.label, s.group) for s in samples} == {
        ("pa_1.png", 0, "pa"),
        ("pa_2.png", 0, "pa"),
        ("pb_1.png", 0, "pb"),
        ("pc_1.png", 1, "pc"),
        ("pc_2.png", 1, "pc"),
        ("loose.png", 1, "loose"),
    }


def test_numbered_class_folders_are_read_as_classes(tmp_path):
    write_png(tmp_path / "0" / "a_1.png")
    write_png(tmp_path / "1" / "b_1.png", seed=1)
    samples, layout = read_dataset(tmp_path)
    assert layout == "folders" and sorted(s.label for s in samples) == [0, 1]


def test_a_layout_can_be_forced(tmp_path):
    samples, layout = read_dataset(idc_tree(tmp_path, patients=2, per_class=1), "idc")
    assert layout == "idc" and len(samples) == 4


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda root: root / "missing", "does not exist"),
        (lambda root: root, "is empty"),
        (lambda root: write_png(root / "x.png"), "is not a folder"),
    ],
)
def test_unusable_paths_are_refused_saying_what_and_where(tmp_path, make, message):
    path = make(tmp_path)
    with pytest.raises(DatasetError, match=message) as raised:
        read_dataset(Path(path))
    assert str(path) in str(raised.value)


def test_one_class_only_is_refused(tmp_path):
    for patient in ("a", "b"):
        write_png(tmp_path / patient / "0" / "x.png", seed=ord(patient))
    with pytest.raises(DatasetError, match=r"only one class \(benign, 2 images\)"):
        read_dataset(tmp_path)


def test_an_unknown_layout_is_refused_naming_the_known_ones(tmp_path):
    write_png(tmp_path / "slides" / "x.png")
    with pytest.raises(DatasetError, match="no known layout"):
        read_dataset(tmp_path)
