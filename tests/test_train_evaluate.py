"""Held-out figures (vqclip.train.evaluate): retrieval recall@k computed by hand on small similarity tables, classes
named by captions, and zero-shot accuracy over them."""
import pytest
import torch
import torch.nn.functional as F

from vqclip.train import evaluate as E


def _feats(rows):
    return F.normalize(torch.as_tensor(rows, dtype=torch.float32), dim=-1)


def test_recall_counts_a_row_right_when_its_k_best_hold_its_caption():
    # image i is closest to text order[i]; texts 0..4 have distinct captions
    txt = torch.eye(5)
    img = txt[[0, 2, 1, 3, 4]] + 0.01 * txt  # images 1 and 2 swapped: 3 of 5 right at @1
    caps = ["a", "b", "c", "d", "e"]
    got = E.retrieval(_feats(img), txt, caps)
    assert got["image_to_text_r1"] == pytest.approx(3 / 5) and got["text_to_image_r1"] == pytest.approx(3 / 5)
    assert got["image_to_text_r5"] == 1.0 and got["text_to_image_r5"] == 1.0
    # k counts: with the right text second-best for images 1 and 2, @2 is right everywhere
    img2 = txt[[0, 2, 1, 3, 4]] + 0.5 * txt
    sim = _feats(img2) @ txt.t()
    assert E._hits(sim, torch.eye(5, dtype=torch.bool), 1) == pytest.approx(3 / 5)
    assert E._hits(sim, torch.eye(5, dtype=torch.bool), 2) == 1.0


def test_an_alike_caption_is_a_right_answer():
    txt = torch.eye(3)
    img = txt[[1, 0, 2]]  # images 0 and 1 find each other's texts
    assert E.retrieval(img, txt, ["x", "y", "z"])["image_to_text_r1"] == pytest.approx(1 / 3)
    assert E.retrieval(img, txt, ["x", "x", "z"])["image_to_text_r1"] == 1.0


def test_classes_are_the_ones_a_caption_names_as_a_word():
    names, labels = E.labels_of(["a red car", "a blue car", "a reddish car", "red and blue", "A RED cat"],
                                ["red", "blue"])
    assert names == ["red", "blue"] and labels == ["red", "blue", None, None, "red"]


def test_classes_are_derived_from_repeated_captions_only():
    assert E.labels_of(["a", "b", "a", "b"], None) == (["a", "b"], ["a", "b", "a", "b"])
    assert E.labels_of(["a", "b", "a"], None)[0] == []  # b captions one image: no classes
    assert E.labels_of(["a", "a"], None)[0] == []  # one class is no classification
    many = [f"c{i}" for i in range(E.MAX_DERIVED)] * 2
    assert len(E.labels_of(many, None)[0]) == E.MAX_DERIVED
    assert E.labels_of(many + ["extra", "extra"], None)[0] == []


def test_zero_shot_accuracy_overall_and_per_class():
    classes = _feats([[1, 0], [0, 1]])
    img = _feats([[1, 0.1], [0.9, 0.2], [0.2, 1], [1, 0.3], [0, 1]])
    got = E.zero_shot(img, classes, ["p", "q"], ["p", "p", "q", "q", None])
    assert got["images"] == 4 and got["accuracy"] == pytest.approx(3 / 4)
    assert got["per_class"] == {"p": 1.0, "q": 0.5}
    assert E.zero_shot(img, classes, ["p", "q"], [None] * 5) is None


def test_class_embeddings_average_the_templates_unit_embeddings():
    class Model:
        def encode_text(self, tokens):
            return tokens.float()

    tokenize = lambda texts: torch.tensor([[len(t), 1.0] for t in texts])  # noqa: E731
    got = E.class_embeddings(Model(), tokenize, ["ab"], ["{}", "{} xxxxxx"], torch.device("cpu"))
    want = F.normalize((F.normalize(torch.tensor([2.0, 1]), dim=0) + F.normalize(torch.tensor([9.0, 1]), dim=0)) / 2,
                       dim=0)
    assert torch.allclose(got[0], want)


def test_text_to_image_recall_asks_each_text_for_its_image():
    txt = torch.eye(3)
    img = _feats([[1, 0, 0], [1, 0.2, 0], [0, 0, 1]])  # images 0 and 1 both nearest text 0
    got = E.retrieval(img, txt, ["a", "b", "c"])
    assert got["image_to_text_r1"] == pytest.approx(2 / 3) and got["text_to_image_r1"] == 1.0
