"""Data sources, filters, splits and the skip report."""

from __future__ import annotations

import json
from collections import Counter

import pytest
from conftest import make_folder_dataset, shape_image

from wardrobe.data import assign_splits, load_dataset
from wardrobe.data.presets import download, load_preset
from wardrobe.data.sources import from_folder, from_manifest, from_regex, parse_mapping
from wardrobe.errors import WardrobeError


def test_folder_per_class(shapes_dir):
    ds = from_folder(shapes_dir)
    assert ds.classes == ["circle", "square", "triangle"]
    assert ds.class_counts() == {"circle": 12, "square": 12, "triangle": 12}
    assert all(r.path.parent.name == r.label for r in ds.records)


def test_folder_empty_class_reported_and_strict(tmp_path):
    make_folder_dataset(tmp_path, per_class=3, shapes=("circle", "square"))
    (tmp_path / "hats").mkdir()
    ds = from_folder(tmp_path)
    assert ds.classes == ["circle", "square"]
    assert ds.skipped.counts()["empty class"] == 1
    assert "hats" in ds.skipped.summary()
    with pytest.raises(WardrobeError, match=r"hats: empty class"):
        from_folder(tmp_path, strict=True)


def test_not_a_folder(tmp_path):
    with pytest.raises(WardrobeError, match="no such file, folder or preset"):
        load_dataset(tmp_path / "missing")


def _manifest_setup(tmp_path, sep=",", header=("image", "label")):
    images = tmp_path / "images"
    images.mkdir()
    rows = []
    for i in range(6):
        kind = ("circle", "square")[i % 2]
        shape_image(kind, i).save(images / f"id{i}.jpg")
        rows.append((f"id{i}", kind))
    rows.append(("ghost", "circle"))  # file does not exist
    rows.append(("id0", ""))  # no label
    text = sep.join(header) + "\n" + "\n".join(sep.join(r) for r in rows) + "\n"
    return images, text


def test_manifest_ids_without_extension_and_skips(tmp_path):
    images, text = _manifest_setup(tmp_path)
    (tmp_path / "m.csv").write_text(text)
    ds = from_manifest(tmp_path / "m.csv", images)
    assert len(ds.records) == 6
    assert all(r.path.suffix == ".jpg" and r.path.is_file() for r in ds.records)
    counts = ds.skipped.counts()
    assert counts["missing file"] == 1 and counts["no label"] == 1
    assert "ghost" in ds.skipped.summary()
    with pytest.raises(WardrobeError, match="ghost.*missing file"):
        from_manifest(tmp_path / "m.csv", images, strict=True)


def test_tsv_manifest_with_custom_columns(tmp_path):
    images, text = _manifest_setup(tmp_path, sep="\t", header=("file", "category"))
    (tmp_path / "m.tsv").write_text(text)
    ds = load_dataset(tmp_path / "m.tsv", images_dir=str(images), image_col="file", label_col="category")
    assert sorted(ds.class_counts().items()) == [("circle", 3), ("square", 3)]


def test_manifest_wrong_column_names_the_columns(tmp_path):
    images, text = _manifest_setup(tmp_path)
    (tmp_path / "m.csv").write_text(text)
    with pytest.raises(WardrobeError) as e:
        from_manifest(tmp_path / "m.csv", images, label_col="class")
    msg = str(e.value)
    assert "m.csv" in msg and "'class'" in msg and "image, label" in msg and "\n" not in msg


def test_manifest_split_column(tmp_path):
    images, _ = _manifest_setup(tmp_path)
    lines = ["image,label,split"] + [f"id{i},{('circle', 'square')[i % 2]},{'train' if i < 4 else 'val'}" for i in range(6)]
    (tmp_path / "s.csv").write_text("\n".join(lines) + "\n")
    ds = assign_splits(load_dataset(tmp_path / "s.csv", images_dir=str(images)))
    assert len(ds.split("train")) == 4 and len(ds.split("validation")) == 2


def test_regex_labels_with_code_map(tmp_path):
    for i in range(6):
        shape_image("circle", i).save(tmp_path / f"{i}_{i % 2}.jpg")
    shape_image("circle", 9).save(tmp_path / "stray.jpg")
    ds = from_regex(tmp_path, r"^\d+_(?P<label>\d+)\.jpg$", parse_mapping("0=shirt,1=pants"))
    assert ds.class_counts() == {"shirt": 3, "pants": 3}
    assert ds.skipped.counts()["no label"] == 1
    raw = load_dataset(tmp_path, label_regex=r"_(?P<label>\d+)\.")
    assert set(raw.classes) == {"0", "1"}
    with pytest.raises(WardrobeError, match="named group"):
        from_regex(tmp_path, r"\d+")


def test_label_map_from_json_file(tmp_path):
    f = tmp_path / "map.json"
    f.write_text(json.dumps({"0": "shirt"}))
    assert parse_mapping(str(f)) == {"0": "shirt"}


def test_filters(tmp_path):
    root = tmp_path / "d"
    make_folder_dataset(root, per_class=2, shapes=("circle",))
    make_folder_dataset(root, per_class=4, shapes=("square",))
    make_folder_dataset(root, per_class=6, shapes=("triangle",))
    assert load_dataset(root, top_k=2).classes == ["square", "triangle"]
    assert load_dataset(root, min_count=4).classes == ["square", "triangle"]
    assert load_dataset(root, include=["circle"]).classes == ["circle"]
    assert load_dataset(root, exclude=["circle"]).classes == ["square", "triangle"]
    merged = load_dataset(root, rename="circle=round,square=round")
    assert merged.class_counts() == {"round": 6, "triangle": 6}
    with pytest.raises(WardrobeError, match="'hexagon'"):
        load_dataset(root, include=["hexagon"])


def test_stratified_split_is_seeded_and_proportional(shapes_dir):
    ds = load_dataset(shapes_dir)
    a = assign_splits(ds, val_ratio=0.25, test_ratio=0.25, seed=1)
    b = assign_splits(ds, val_ratio=0.25, test_ratio=0.25, seed=1)
    assert [r.split for r in a.records] == [r.split for r in b.records]
    for split in ("validation", "test"):
        assert Counter(r.label for r in a.split(split)) == {"circle": 3, "square": 3, "triangle": 3}
    assert len(a.split("train")) == 18


def test_split_refuses_tiny_class(tmp_path):
    make_folder_dataset(tmp_path, per_class=1, shapes=("circle",))
    make_folder_dataset(tmp_path, per_class=5, shapes=("square",))
    with pytest.raises(WardrobeError, match="'circle' has fewer than 2 photos"):
        assign_splits(load_dataset(tmp_path))


def _fake_dataset_dir(root):
    images = root / "clothing-dataset" / "images"
    images.mkdir(parents=True)
    rows, top = [], []
    for i in range(8):
        label = ("T-Shirt", "Pants", "Not sure", "Skip")[i % 4]
        shape_image("circle", i).save(images / f"u{i}.jpg")
        rows.append(f"u{i},1,{label},False")
        if label in ("T-Shirt", "Pants"):
            top.append(f"u{i},{label.lower()},{'train' if i < 5 else 'validation'}")
    (root / "clothing-dataset" / "images.csv").write_text("image,sender_id,label,kids\n" + "\n".join(rows) + "\n")
    (root / "clothing-dataset" / "top10-split.csv").write_text("image,label,split\n" + "\n".join(top) + "\n")


def test_presets_read_the_data_dir(tmp_path, monkeypatch):
    _fake_dataset_dir(tmp_path)
    monkeypatch.setenv("WARDROBE_DATA_DIR", str(tmp_path))
    top = load_dataset("clothing-top10")
    assert top.classes == ["pants", "t-shirt"] and top.has_splits
    c17 = load_dataset("clothing-17")
    assert c17.classes == ["Pants", "T-Shirt"]  # Not sure / Skip dropped
    monkeypatch.setenv("WARDROBE_DATA_DIR", str(tmp_path / "empty"))
    with pytest.raises(WardrobeError, match="wardrobe datasets download"):
        load_preset("clothing-top10")


def test_download_offline_is_one_clear_line(tmp_path):
    from wardrobe.data import presets

    with pytest.raises(WardrobeError) as e:
        presets._fetch("http://127.0.0.1:9/clothing.zip", timeout=2)  # loopback port with nothing listening
    assert "cannot download" in str(e.value) and "\n" not in str(e.value)


def test_download_builds_preset_layout(tmp_path, monkeypatch):
    """The download path, fed archives shaped like upstream's, produces what the presets read."""
    import io
    import zipfile

    def zip_bytes(files: dict[str, bytes]) -> bytes:
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as z:
            for name, data in files.items():
                z.writestr(name, data)
        return buf.getvalue()

    jpg = io.BytesIO()
    shape_image("circle", 0).save(jpg, format="JPEG")
    full = zip_bytes({"clothing-dataset-master/images/a.jpg": jpg.getvalue(),
                      "clothing-dataset-master/images/b.jpg": jpg.getvalue(),
                      "clothing-dataset-master/images.csv": b"image,sender_id,label,kids\na,1,Hat,False\nb,1,Shoes,False\n"})
    small = zip_bytes({"clothing-dataset-small-master/train/hat/a.jpg": jpg.getvalue(),
                       "clothing-dataset-small-master/validation/shoes/b.jpg": jpg.getvalue()})
    root = download(tmp_path, fetch=lambda url, progress=None: full if url.endswith("clothing-dataset/archive/refs/heads/master.zip") else small)
    monkeypatch.setenv("WARDROBE_DATA_DIR", str(tmp_path))
    assert root == tmp_path / "clothing-dataset"
    ds = load_dataset("clothing-top10")
    assert {(r.label, r.split) for r in ds.records} == {("hat", "train"), ("shoes", "validation")}


def test_split_too_small_for_a_stratified_share_is_one_line(tmp_path):
    make_folder_dataset(tmp_path, per_class=2, shapes=("circle", "square"))
    # 4 photos: a 15% validation share is 1 photo, fewer than the 2 classes (scikit-learn's ValueError before)
    with pytest.raises(WardrobeError, match="4 photos of 2 classes are too few for a stratified validation share"):
        assign_splits(load_dataset(tmp_path))
    assert len(assign_splits(load_dataset(tmp_path), val_ratio=0.5).split("validation")) == 2
