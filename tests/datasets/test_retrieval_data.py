"""Retrieval data: the icon-theme build (from generated .deb files, no apt-get), the CUB loader on a synthetic
CUB_200_2011 folder, and the class-balanced episodes."""

import io
import json
import lzma
import tarfile

import numpy as np
import pytest
from PIL import Image

from identity_tf.datasets import retrieval
from identity_tf.datasets.cache import CorruptDataError, DataError
from identity_tf.datasets.retrieval import building, sources
from identity_tf.datasets.retrieval.pipeline import ClassTable, make_dataset

# five colours, one per fake theme; classes differ by the square's size
COLOURS = [(255, 0, 0), (0, 160, 0), (0, 0, 255), (200, 120, 0), (120, 0, 200)]


def _png(colour, size, square):
    image = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    pixels = np.zeros((size, size, 4), np.uint8)
    pixels[:square, :square] = (*colour, 255)
    image = Image.fromarray(pixels)
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def _svg(colour):
    r, g, b = colour
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="16" height="16" viewBox="0 0 16 16">'
        f'<rect width="16" height="16" fill="rgb({r},{g},{b})"/></svg>'
    ).encode()


def _deb(path, entries):
    """A .deb (ar archive with data.tar.xz) holding ``entries``: ``{path: bytes}`` files or ``{path: "->target"}``."""
    tar_bytes = io.BytesIO()
    with tarfile.open(fileobj=tar_bytes, mode="w") as archive:
        for name, content in entries.items():
            info = tarfile.TarInfo("./" + name)
            if isinstance(content, str):
                info.type, info.linkname = tarfile.SYMTYPE, content[2:]
                archive.addfile(info)
            else:
                info.size = len(content)
                archive.addfile(info, io.BytesIO(content))
    members = [
        (b"debian-binary", b"2.0\n"),
        (b"control.tar.xz", lzma.compress(b"")),
        (b"data.tar.xz", lzma.compress(tar_bytes.getvalue())),
    ]
    out = bytearray(b"!<arch>\n")
    for name, body in members:
        header = name.ljust(16) + b"0".ljust(12) + b"0".ljust(6) + b"0".ljust(6) + b"100644".ljust(8)
        out += header + str(len(body)).encode().ljust(10) + b"`\n" + body + (b"\n" if len(body) % 2 else b"")
    path.write_bytes(bytes(out))
    return path


def fake_themes(data_dir, num_themes=5):
    """Five themes: "a" (PNG at 64 and 16 px), "b" (theme 0: a symbolic link to "a2"; the others: a 96 px PNG and an
    SVG), "c" (4 themes only), "d-symbolic" (monochrome: left out), "e" (SVG only). Classes: a, b, e."""
    downloads = data_dir / "downloads"
    downloads.mkdir(parents=True)
    themes = []
    for t in range(num_themes):
        folder = f"Theme{t}"
        base = f"usr/share/icons/{folder}"
        entries = {
            f"{base}/64x64/apps/a.png": _png(COLOURS[t], 64, 20),
            f"{base}/16x16/apps/a.png": _png(COLOURS[t], 16, 16),  # smaller: not chosen
            f"{base}/64x64/apps/d-symbolic.png": _png(COLOURS[t], 64, 64),
            f"{base}/scalable/apps/e.svg": _svg(COLOURS[t]),  # SVG only: rasterised
            f"usr/share/doc/fake{t}/copyright": f"Files: *\nLicense: test-{t}\n".encode(),
        }
        if t == 0:
            entries[f"{base}/64x64/apps/a2.png"] = _png(COLOURS[t], 64, 40)
            entries[f"{base}/64x64/apps/b.png"] = "->a2.png"  # an alias (symbolic link)
        else:
            entries[f"{base}/96x96/apps/b.png"] = _png(COLOURS[t], 96, 60)
            entries[f"{base}/scalable/apps/b.svg"] = _svg((0, 0, 0))  # a large PNG wins over the SVG
        if t < 4:
            entries[f"{base}/64x64/apps/c.png"] = _png(COLOURS[t], 64, 8)  # only 4 themes: left out
        package = f"fake{t}"
        deb = _deb(downloads / f"{package}_1.0_all.deb", entries)
        themes.append(sources.Theme(package, "1.0", building.cache.sha256_file(deb), folder, f"test-{t}"))
    return themes


def test_build_from_debs(tmp_path):
    themes = fake_themes(tmp_path)
    folder = building.build(tmp_path, image_size=32, seed=0, min_instances=5, themes=themes, progress=False)
    data = retrieval.load_icons(32, tmp_path)
    assert data.class_names == ["a", "b", "e"]  # c: 4 themes; d-symbolic: left out
    assert data.images.shape == (15, 32, 32, 3) and data.labels.tolist() == [0] * 5 + [1] * 5 + [2] * 5
    assert np.load(folder / "themes.npy").tolist() == [0, 1, 2, 3, 4] * 3
    # "a": the 64 px PNG (a 20 px square of 64 -> 10 of 32 px top left, white elsewhere)
    a0 = data.images[0]
    assert np.abs(a0[:8, :8].astype(int) - [255, 0, 0]).max() <= 3 and a0[12:, 12:].min() >= 250  # Lanczos ringing
    # "b" of theme 0 is the alias of a2 (40 of 64 px -> 20 of 32); of the others the 96 px PNG (60 -> 20 of 32)
    for image, colour in zip(data.images[5:10], COLOURS):
        assert np.abs(image[:18, :18].astype(int) - colour).max() <= 3 and image[22:, 22:].min() >= 250
    # "e": the SVG, rasterised: one flat colour
    for image, colour in zip(data.images[10:15], COLOURS):
        assert np.abs(image.astype(int) - np.array(colour)).max() <= 1
    # half/half class split, disjoint and complete
    assert len(data.train_classes) == 1 and len(data.test_classes) == 2
    assert sorted(data.train_classes + data.test_classes) == [0, 1, 2]
    record = json.loads((folder / "provenance.json").read_text())
    assert record["licences"] == {f"fake{t}": f"test-{t}" for t in range(5)} and record["image_size"] == 32
    assert (folder / "copyright" / "fake3.txt").read_text() == "Files: *\nLicense: test-3\n"
    # built once: a second call keeps the folder; a changed file is reported on load
    stamp = (folder / "images.npy").stat().st_mtime_ns
    building.build(tmp_path, image_size=32, seed=0, min_instances=5, themes=themes, progress=False)
    assert (folder / "images.npy").stat().st_mtime_ns == stamp
    np.save(folder / "labels.npy", np.zeros(15, np.int32))
    with pytest.raises(CorruptDataError, match="labels.npy"):
        retrieval.load_icons(32, tmp_path)


def test_split_classes_half_half():
    for num_classes, seed in ((586, 0), (7, 3)):
        train, test = building.split_classes(num_classes, seed)
        assert len(train) == num_classes // 2 and len(test) == num_classes - num_classes // 2
        assert not set(train) & set(test) and set(train) | set(test) == set(range(num_classes))


def test_bad_inputs(tmp_path):
    (tmp_path / "x.deb").write_bytes(b"not a deb")
    with pytest.raises(DataError, match="not a Debian package"):
        sources.deb_members(tmp_path / "x.deb")
    with pytest.raises(ValueError, match="image_size"):
        building.build(tmp_path, image_size=4)
    with pytest.raises(ValueError, match="min_instances=5"):
        building.build(tmp_path, themes=sources.THEMES[:3])
    with pytest.raises(ValueError, match="source"):
        retrieval.load("imagenet")
    with pytest.raises(DataError, match="CUB_200_2011"):
        retrieval.load_cub(tmp_path)


def make_cub(root, num_classes=4, per_class=3):
    """A CUB_200_2011 folder in the official layout; image ids listed out of order; colour = class."""
    cub = root / "CUB_200_2011"
    (cub / "images").mkdir(parents=True)
    ids, rows, labels = [], [], []
    image_id = 0
    for c in range(1, num_classes + 1):
        (cub / "images" / f"{c:03d}.Bird_{c}").mkdir()
        for i in range(per_class):
            image_id += 1
            name = f"{c:03d}.Bird_{c}/img_{i}.jpg"
            colour = (60 * c, 255 - 50 * c, 20 * i)
            Image.new("RGB", (40 + 10 * i, 30), colour).save(cub / "images" / name, quality=95)
            ids.append(image_id)
            rows.append(f"{image_id} {name}")
            labels.append(f"{image_id} {c}")
    order = np.random.default_rng(0).permutation(len(rows))
    (cub / "images.txt").write_text("\n".join(rows[i] for i in order) + "\n")
    (cub / "image_class_labels.txt").write_text("\n".join(labels) + "\n")
    (cub / "classes.txt").write_text("\n".join(f"{c} {c:03d}.Bird_{c}" for c in range(1, num_classes + 1)) + "\n")
    (cub / "train_test_split.txt").write_text("\n".join(f"{i} {i % 2}" for i in ids) + "\n")  # not used
    return cub


def test_cub_loader(tmp_path):
    make_cub(tmp_path)
    data = retrieval.load("auto", image_size=16, data_dir=tmp_path)  # auto: the CUB folder is found
    assert data.source == "cub" and data.images.shape == (12, 16, 16, 3)
    assert data.class_names == [f"{c:03d}.Bird_{c}" for c in range(1, 5)]
    assert data.labels.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]  # by image id
    assert data.train_classes == [0, 1] and data.test_classes == [2, 3]  # class ids 1-2 train, 3-4 test
    for image, label in zip(data.images, data.labels):  # the centre crop of a flat image: its colour
        c = label + 1
        assert np.abs(image.astype(int).mean((0, 1)) - np.array([60 * c, 255 - 50 * c, 0])).max() < 45
    assert retrieval.load_cub(tmp_path / "CUB_200_2011", 16).labels.tolist() == data.labels.tolist()
    (tmp_path / "CUB_200_2011" / "image_class_labels.txt").write_text("1 1\n")
    with pytest.raises(DataError, match="different image ids"):
        retrieval.load_cub(tmp_path, 16)


def test_cub_missing_image(tmp_path):
    cub = make_cub(tmp_path)
    (cub / "images" / "002.Bird_2" / "img_1.jpg").unlink()
    with pytest.raises(DataError, match="img_1.jpg"):
        retrieval.load_cub(tmp_path, 16)


def test_episodes_are_class_balanced():
    labels = np.repeat(np.arange(6), [3, 4, 5, 3, 6, 4])
    images = np.arange(len(labels), dtype=np.uint8).reshape(-1, 1, 1, 1).repeat(3, -1)  # pixel = image index
    split = np.flatnonzero(labels < 5)  # classes 0-4
    table = ClassTable.from_labels(labels, split)
    dataset = make_dataset(images, labels, table, 3, 2, num_episodes=5, batch_size=2, seed=1, training=True)
    passes = []
    for _ in range(2):
        batches = [(x.numpy(), y.numpy()) for x, y in dataset]
        assert [x.shape for x, _ in batches] == [(2, 6, 1, 1, 3)] * 2  # 5 episodes: 2 full batches
        for x, y in batches:
            for episode_x, episode_y in zip(x, y):
                index = episode_x[:, 0, 0, 0].astype(int)
                assert len(set(index)) == 6 and set(index) <= set(split)  # distinct images of the split
                assert episode_y.tolist() == labels[index].tolist()
                assert len(set(episode_y)) == 3 and all(episode_y[2 * j] == episode_y[2 * j + 1] for j in range(3))
        passes.append(np.concatenate([y for _, y in batches]))
    assert not np.array_equal(passes[0], passes[1])  # fresh episodes every epoch
    fixed = make_dataset(images, labels, table, 3, 2, num_episodes=5, batch_size=2, seed=1, training=False)
    first, second = ([y.numpy() for _, y in fixed] for _ in range(2))
    assert [len(y) for y in first] == [2, 2, 1] and all(np.array_equal(a, b) for a, b in zip(first, second))
    with pytest.raises(ValueError, match="data.classes_per_episode"):
        make_dataset(images, labels, table, 6, 2, 1, 1)
    with pytest.raises(ValueError, match="data.images_per_class"):
        make_dataset(images, labels, table, 2, 4, 1, 1)


def test_augment_flips_and_shifts_each_image():
    from identity_tf.datasets.retrieval.pipeline import augment

    # 8 x 8 images whose pixel (r, c) holds 10 r + c (+ 100 i for image i): a crop's corner names its shift
    grid = 10 * np.arange(8)[:, None] + np.arange(8)[None, :]
    images = np.stack([grid + 100 * i for i in range(2)]).astype(np.int32)[..., None]
    out = augment(images.astype(np.uint16), np.random.default_rng(3), pad_fraction=0.25)  # pad 2
    rng = np.random.default_rng(3)  # the same draws, in augment's order: flips, then offsets
    flips, offsets = rng.random(2) < 0.5, rng.integers(0, 5, size=(2, 2))
    for i in range(2):
        expected = np.pad(images[i, ..., 0], 2, mode="edge")[
            offsets[i, 0] : offsets[i, 0] + 8, offsets[i, 1] : offsets[i, 1] + 8
        ]
        expected = expected[:, ::-1] if flips[i] else expected
        assert np.array_equal(out[i, ..., 0], expected)
    assert out.shape == images.shape and out.dtype == np.uint16
    assert out[1].min() >= 100  # edge padding: no pixel from outside the image


def test_augmented_episodes_are_seeded():
    labels = np.repeat(np.arange(4), 4)
    images = np.random.default_rng(0).integers(0, 255, size=(16, 8, 8, 3)).astype(np.uint8)
    table = ClassTable.from_labels(labels, np.arange(16))

    def first_batch(augmented, seed=1):
        dataset = make_dataset(images, labels, table, 2, 2, 2, 1, seed=seed, training=True, augmented=augmented)
        return next(iter(dataset))

    (x_plain, y_plain), (x_aug, y_aug) = first_batch(False), first_batch(True)
    assert np.array_equal(y_plain, y_aug)  # the same episode is drawn: augment draws after sampling
    assert not np.array_equal(x_plain, x_aug)
    assert np.array_equal(first_batch(True)[0], x_aug)  # seeded
    from identity_tf.tasks.retrieval.task import RetrievalData

    with pytest.raises(ValueError, match="data.augment"):
        RetrievalData(augment="yes")
