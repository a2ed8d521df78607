"""Training data (vqclip.train.data): pairs from a folder, CSV or JSONL, bad images skipped and counted, captions
missing named, a seeded split, batches that fit, and a per-epoch order a resumed run replays."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vqclip.errors import VqclipError
from vqclip.train import data as D


def _image(path, size=(20, 20), color=(200, 30, 30)):
    Image.new("RGB", size, color).save(path)
    return path


def _folder(tmp_path, n=5, caption=True):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(n):
        _image(folder / f"im{i}.png")
        if caption:
            (folder / f"im{i}.txt").write_text(f"a red   square\nnumber {i}\n")
    return folder


def test_a_folder_gives_each_image_with_the_caption_beside_it(tmp_path):
    folder = _folder(tmp_path, 3)
    (folder / "sub").mkdir()
    _image(folder / "sub" / "deep.jpg")
    (folder / "sub" / "deep.txt").write_text("a deep one")
    (folder / "notes.md").write_text("not an image")
    pairs = D.read_pairs(folder)
    assert [p.image.name for p in pairs] == ["im0.png", "im1.png", "im2.png", "deep.jpg"]
    assert pairs[1].caption == "a red square number 1"  # lines joined, spaces collapsed
    assert pairs[3].caption == "a deep one"


def test_unreadable_and_tiny_images_are_skipped_and_counted(tmp_path, caplog):
    folder = _folder(tmp_path, 2)
    (folder / "broken.png").write_bytes(b"\x89PNG not really")
    (folder / "broken.txt").write_text("x")
    _image(folder / "edge.png", (D.MIN_SIDE, 40))  # exactly the limit: kept
    (folder / "edge.txt").write_text("edge")
    _image(folder / "tiny.png", (40, D.MIN_SIDE - 1))  # one pixel under: skipped
    (folder / "tiny.txt").write_text("tiny")
    with caplog.at_level(logging.INFO, logger="vqclip"):
        pairs = D.read_pairs(folder)
    assert sorted(p.image.name for p in pairs) == ["edge.png", "im0.png", "im1.png"]
    assert "skipped 2 of 5 images: 1 unreadable, 1 tiny" in caplog.text


def test_bad_folders_are_one_line_errors(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(VqclipError, match="the folder is empty"):
        D.read_pairs(empty)
    texts = tmp_path / "texts"
    texts.mkdir()
    (texts / "a.txt").write_text("hello")
    with pytest.raises(VqclipError, match="none of its 1 files is an image"):
        D.read_pairs(texts)
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "a.png").write_bytes(b"nope")
    (junk / "a.txt").write_text("a caption")
    with pytest.raises(VqclipError, match="none of its 1 images is readable"):
        D.read_pairs(junk)
    with pytest.raises(VqclipError, match="no such folder or file"):
        D.read_pairs(tmp_path / "absent")


def test_missing_captions_name_the_first_few_files(tmp_path):
    folder = _folder(tmp_path, 6, caption=False)
    (folder / "im0.txt").write_text("has one")
    (folder / "im1.txt").write_text("   \n")  # blank: as good as none
    with pytest.raises(VqclipError) as err:
        D.read_pairs(folder)
    msg = str(err.value)
    assert "5 of 6 images have no caption (im1.png, im2.png, im3.png and 2 more)" in msg and "\n" not in msg


def test_csv_and_jsonl_name_images_relative_to_their_folder(tmp_path):
    folder = _folder(tmp_path, 2)
    csv_file = tmp_path / "pairs.csv"
    csv_file.write_text("filepath,caption\nimgs/im0.png,first one\nimgs/im1.png,second\n")
    assert [(p.image, p.caption) for p in D.read_pairs(csv_file)] == [
        (folder / "im0.png", "first one"), (folder / "im1.png", "second")]
    jsonl = tmp_path / "pairs.jsonl"
    jsonl.write_text(json.dumps({"img": "imgs/im1.png", "text": "by keys"}) + "\n\n")
    assert [(p.image, p.caption) for p in D.read_pairs(jsonl, "img", "text")] == [(folder / "im1.png", "by keys")]


def test_tables_without_the_columns_or_captions_are_one_line_errors(tmp_path):
    _folder(tmp_path, 2)
    csv_file = tmp_path / "pairs.csv"
    csv_file.write_text("filepath,title\nimgs/im0.png,x\n")
    with pytest.raises(VqclipError, match=r"no column 'caption' \(columns: filepath, title\); name the right one "
                                          "with --caption-key"):
        D.read_pairs(csv_file)
    with pytest.raises(VqclipError, match="no column 'path'.*--image-key"):
        D.read_pairs(csv_file, img_key="path", caption_key="title")
    csv_file.write_text("filepath,caption\nimgs/im0.png,\nimgs/im1.png,ok\n")
    with pytest.raises(VqclipError, match=r"1 rows have no caption \(row 1 \(imgs/im0.png\)\)"):
        D.read_pairs(csv_file)
    jsonl = tmp_path / "bad.jsonl"
    jsonl.write_text('{"filepath": "imgs/im0.png", "caption": "x"}\n[1, 2]\n')
    with pytest.raises(VqclipError, match="line 2 is not a JSON object"):
        D.read_pairs(jsonl)
    other = tmp_path / "pairs.txt"
    other.write_text("x")
    with pytest.raises(VqclipError, match="a .csv or a .jsonl"):
        D.read_pairs(other)


def test_the_split_is_seeded_disjoint_and_holds_out_the_share():
    train, val = D.split(20, 0.25, seed=3)
    assert len(val) == 5 and sorted(train + val) == list(range(20))
    assert D.split(20, 0.25, seed=3) == (train, val)
    assert D.split(20, 0.25, seed=4) != (train, val)
    assert D.split(20, 0.0, seed=3) == (list(range(20)), [])
    assert len(D.split(20, 0.01, seed=3)[1]) == 1  # a share under one pair still holds one out
    assert len(D.split(2, 0.99, seed=3)[0]) == 1  # never all of them
    with pytest.raises(VqclipError, match="--val"):
        D.split(20, 1.0, 0)
    with pytest.raises(VqclipError, match="--val"):
        D.split(20, -0.1, 0)


def test_the_split_is_recorded_and_read_back(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    pairs = [D.Pair(Path(f"{i}.png"), f"caption {i}") for i in range(4)]  # relative, as --data may give them
    D.write_split(tmp_path, pairs, [0, 2], [3])
    data = json.loads((tmp_path / "split.json").read_text())
    assert [r["caption"] for r in data["train"]] == ["caption 0", "caption 2"]
    monkeypatch.chdir(tmp_path.parent)  # a resume from another folder finds the same images
    assert D.read_split(tmp_path) == ([D.Pair(tmp_path / "0.png", "caption 0"), D.Pair(tmp_path / "2.png", "caption 2")],
                                      [D.Pair(tmp_path / "3.png", "caption 3")])
    with pytest.raises(VqclipError, match="cannot read the run's split"):
        D.read_split(tmp_path / "elsewhere")


def test_a_batch_must_fit_the_training_pairs():
    D.check_batch(10, 10)
    D.check_batch(2, 10)
    with pytest.raises(VqclipError, match="--batch 11 is larger than the 10 training pairs"):
        D.check_batch(11, 10)
    with pytest.raises(VqclipError, match="at least 2"):
        D.check_batch(1, 10)


def test_each_epoch_visits_full_batches_in_its_own_seeded_order():
    n, b = 10, 3  # three full batches per epoch; the last pair of each epoch's order is dropped
    epoch0 = [D.batch_indices(n, b, 7, s) for s in range(3)]
    epoch1 = [D.batch_indices(n, b, 7, s) for s in range(3, 6)]
    assert sum(epoch0, []) == np.random.default_rng([7, 0]).permutation(n).tolist()[:9]
    assert sum(epoch1, []) == np.random.default_rng([7, 1]).permutation(n).tolist()[:9]
    assert epoch0 != epoch1 and all(len(x) == b for x in epoch0 + epoch1)
    assert D.batch_indices(n, b, 8, 0) != epoch0[0]
    assert D.batch_indices(n, n, 7, 1) == D.epoch_order(n, 7, 1)  # a batch of all: one step per epoch


def test_each_image_of_a_step_has_its_own_augmentation_seed():
    a, b = D.image_seeds(0, 3, 4), D.image_seeds(0, 4, 4)
    assert len(set(a + b)) == 8  # per place and per step
    assert D.image_seeds(1, 3, 4) != a and D.image_seeds(0, 3, 4) == a


def test_an_images_crop_follows_its_seed_not_its_neighbours(tmp_path):
    import torch
    from open_clip.transform import PreprocessCfg, image_transform_v2

    folder = tmp_path / "imgs"
    folder.mkdir()
    rng = np.random.default_rng(0)
    pairs = []
    for i in range(2):
        Image.fromarray(rng.integers(0, 255, (48, 40, 3), dtype=np.uint8)).save(folder / f"{i}.png")
        pairs.append(D.Pair(folder / f"{i}.png", "x"))
    tf = image_transform_v2(PreprocessCfg(size=32), is_train=True)
    torch.manual_seed(5)
    state = torch.get_rng_state()
    both = D.load_images(pairs, tf, [11, 12])
    assert torch.equal(torch.get_rng_state(), state)  # torch's own RNG untouched
    assert torch.equal(both[1], D.load_images(pairs[1:], tf, [12])[0])
    assert not torch.equal(both[1], D.load_images(pairs[1:], tf, [13])[0])
