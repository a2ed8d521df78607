"""The one CLIP scorer: one pass, chunks and a device's shard give the value and gradient of the plain distance loss on
the whole batch, computed here independently (great-circle distance of unit embeddings, weighted mean)."""

from __future__ import annotations

import copy

import pytest
import torch

from vqclip.optim.scoring import Scorer, shard_of

N = 5


@pytest.fixture(scope="module")
def clip(tiny_models):
    return tiny_models.clips[0][0]


@pytest.fixture(scope="module")
def setup(clip):
    """Cutouts [5,3,32,32], two targets [2,D] (one pushed away) and their weights."""
    g = torch.Generator().manual_seed(0)
    cutouts = torch.rand(N, 3, 32, 32, generator=g)
    with torch.no_grad():
        targets = clip.encode_text(["a red circle", "a blue square"])
    return cutouts, targets, torch.tensor([1.0, -0.5])


def reference(clip, cutouts, targets, weights, stops=None):
    """The loss written out: 2 arcsin(|x - y| / 2)^2 per cutout and target, mean over cutouts, weighted sum; a stop
    cuts the gradient (not the value) of the pairs past it."""
    x = clip.encode_image(cutouts)
    x = x / x.norm(dim=-1, keepdim=True)
    d = 2 * torch.arcsin(torch.cdist(x, targets).div(2).clamp(max=1)) ** 2  # [N,M]
    if stops is not None:
        d = torch.where(d * weights.sign() < stops, d.detach(), d)
    return (d.mean(0) * weights).sum()


def value_and_grad(fn, cutouts):
    leaf = cutouts.clone().requires_grad_(True)
    loss = fn(leaf)
    (2.5 * loss).backward()  # an incoming gradient that is not 1
    return loss.detach(), leaf.grad


@pytest.mark.parametrize("chunk", [0, 1, 2, N - 1, N, N + 1])
def test_any_chunk_gives_the_whole_batch_loss_and_gradient(clip, setup, chunk):
    cutouts, targets, weights = setup
    want, want_grad = value_and_grad(lambda c: reference(clip, c, targets, weights), cutouts)
    got, grad = value_and_grad(lambda c: Scorer(clip.encode_image, chunk=chunk)(c, targets, weights), cutouts)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(grad, want_grad, rtol=1e-4, atol=1e-7)


def test_stops_cut_the_gradient_of_the_pairs_past_them_in_every_chunk(clip, setup):
    cutouts, targets, weights = setup
    with torch.no_grad():
        d = reference(clip, cutouts[:1], targets, torch.tensor([1.0, 0.0]))
    stops = torch.tensor([d.item(), -float("inf")])  # the first cutout's distance to the first target: some pass it
    want, want_grad = value_and_grad(lambda c: reference(clip, c, targets, weights, stops), cutouts)
    for chunk in (0, 2):
        got, grad = value_and_grad(lambda c: Scorer(clip.encode_image, chunk=chunk)(c, targets, weights, stops),
                                   cutouts)
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(grad, want_grad, rtol=1e-4, atol=1e-7)
    free, free_grad = value_and_grad(lambda c: reference(clip, c, targets, weights), cutouts)
    torch.testing.assert_close(got, free)  # the value is the stop-free one, only the gradient is cut
    assert (grad - free_grad).abs().max() > 1e-4


def test_without_grad_the_chunks_give_the_value(clip, setup):
    """A batch that requires grad, scored under torch.no_grad (as for a logged loss): no chunk is back-propagated."""
    cutouts, targets, weights = setup
    cutouts = cutouts.clone().requires_grad_(True)
    with torch.no_grad():
        want = reference(clip, cutouts, targets, weights)
        got = Scorer(clip.encode_image, chunk=2)(cutouts, targets, weights)
    assert not got.requires_grad and cutouts.grad is None
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_the_chunked_loss_has_the_true_gradient_for_any_incoming_gradient(clip):
    """gradcheck (float64) of the chunked loss as a function of the cutouts, scaled by 3 after it so that the
    incoming gradient is not 1."""
    double = copy.deepcopy(clip).double()
    with torch.no_grad():
        targets = double.encode_text(["a red circle"])
    weights = torch.tensor([1.0], dtype=torch.float64)
    batch = torch.rand(5, 3, 32, 32, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    fn = lambda b: 3 * Scorer(double.encode_image, chunk=2)(b, targets, weights)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (batch.requires_grad_(True),), eps=1e-6, atol=1e-5, fast_mode=True)


@pytest.fixture
def one_process_group():
    """torch.distributed started in this process alone (gloo, world size 1): all_reduce is then the identity, so each
    rank's shard can be checked by itself here."""
    import torch.distributed as dist

    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    yield
    dist.destroy_process_group()


def test_a_shard_scores_its_rows_and_the_shards_sum_to_the_whole(clip, setup, one_process_group):
    """Of 5 cutouts on 2 devices, rank 0 scores rows 0:2 and rank 1 rows 2:5 (2 at a time: 2, 1), each weighted by
    its share of the rows, its gradient only on its rows; the two add up to the whole batch's loss and gradient."""
    cutouts, targets, weights = setup
    assert shard_of() == (0, 1)
    want, want_grad = value_and_grad(lambda c: reference(clip, c, targets, weights), cutouts)
    shares = []
    for rank, (lo, hi) in enumerate([(0, 2), (2, 5)]):
        for chunk in (0, 2):
            sizes = []
            encode = lambda c: sizes.append(len(c)) or clip.encode_image(c)  # noqa: E731
            got, grad = value_and_grad(lambda c: Scorer(encode, chunk=chunk, shard=(rank, 2))(c, targets, weights),
                                       cutouts)
            assert sizes == ([hi - lo] if chunk == 0 or chunk >= hi - lo else [2] * ((hi - lo) // 2) + [1])
            own, own_grad = value_and_grad(lambda c: reference(clip, c[lo:hi], targets, weights) * (hi - lo) / N,
                                           cutouts)
            torch.testing.assert_close(got, own, rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(grad, own_grad, rtol=1e-4, atol=1e-7)
            assert grad[lo:hi].abs().sum() > 0 and not grad[:lo].any() and not grad[hi:].any()
        shares.append((got, grad))
    torch.testing.assert_close(shares[0][0] + shares[1][0], want, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(shares[0][1] + shares[1][1], want_grad, rtol=1e-4, atol=1e-7)


def test_the_autocast_is_the_scorers(clip, setup):
    """Under bf16 the CLIP runs in bf16 (its embeddings differ from fp32's) and the loss is computed in fp32."""
    cutouts, targets, weights = setup
    seen = []
    encode = lambda c: seen.append(torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else None) \
        or clip.encode_image(c)  # noqa: E731
    with torch.no_grad():
        fp32 = Scorer(encode)(cutouts, targets, weights)
        bf16 = Scorer(encode, amp=torch.bfloat16)(cutouts, targets, weights)
    assert seen == [None, torch.bfloat16]
    assert bf16.dtype == torch.float32 and fp32 != bf16
    torch.testing.assert_close(bf16, fp32, rtol=0.05, atol=0.05)


def test_the_objective_scores_with_its_micro_batch_and_its_shard(tiny_job, tiny_models):
    """The run's loss goes through the scorer with the job's micro-batch and this process's shard: of 5 cutouts,
    2 at a time; as rank 1 of 2 devices, its rows 2:5 only (the all_reduce of a lone process is skipped here)."""
    from vqclip.config import merge_layers
    from vqclip.optim.objective import Objective

    cfg = merge_layers([("tiny", tiny_job), ("test", {"prompt": "a red circle", "micro_batch": 2, "precision": "fp32",
                                                      "cutouts": {"n": 5}})])
    objective = Objective(cfg, tiny_models, torch.device("cpu"))
    clip = tiny_models.clips[0][0]
    scorer = objective._scorer(clip)
    assert (scorer.chunk, scorer.shard, scorer.amp) == (2, (0, 1), None)
    sizes = []
    objective._encode[id(clip)] = lambda c: sizes.append(len(c)) or clip.encode_image(c)
    image = torch.rand(1, 3, 32, 32, requires_grad=True)
    objective.losses(image, torch.zeros(1), torch.zeros(1), 0)
    assert sizes == [2, 2, 1]
    objective.rank, objective.world = 1, 2
    assert objective._scorer(clip).shard == (1, 2)
