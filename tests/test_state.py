"""The run state (`RunState`: latents, init targets, optimiser, step, RNG, the best-of-n start) and the one loop's
stepping (`run_steps`), against a small objective written here: saved and restored whole, a state goes on exactly as
the one it was saved from; keep, move and restart change exactly what they say."""

import pytest
import torch

from vqclip.errors import VqclipError
from vqclip.optim.loop import StepEvent, loss_numbers, run_steps, take_step
from vqclip.optim.state import RunState


class Toy:
    """An objective over z [B,4,2,2]: the image is sigmoid(z[:, :3]); the loss pulls z towards a random target drawn
    from torch's global RNG each step (as Kornia's augments are) and z_init's term towards the init target."""

    z_min, z_max = torch.full((1, 4, 1, 1), -2.0), torch.full((1, 4, 1, 1), 2.0)

    def project(self, z):
        z.copy_(z.maximum(self.z_min).minimum(self.z_max))

    def decode(self, z):
        return torch.sigmoid(z[:, :3])

    def losses(self, image, z, z_init, step, views=None):
        target = torch.rand(z.shape)
        return {"fit": ((z - target) ** 2).mean() * (1 + step), "init": 0.5 * ((z - z_init) ** 2).mean()}


def state(starts: int = 1, seed: int = 7, optimizer: str = "adam") -> RunState:
    z = torch.randn(starts, 4, 2, 2, generator=torch.Generator().manual_seed(seed))
    return RunState(z, optimizer, 0.3, seed)


def steps(s: RunState, n: int) -> list[float]:
    return [float(take_step(s, Toy(), 0.3, 10).loss_value) for _ in range(n)]


@pytest.mark.parametrize("optimizer", ["adam", "rmsprop"])
def test_a_state_saved_and_loaded_into_a_fresh_one_goes_on_exactly(optimizer):
    torch.manual_seed(1)
    a = state(optimizer=optimizer)
    steps(a, 3)
    a.move_to(a.z.detach() * 0.5, reset_optimizer=False)  # an init target other than the first latent
    steps(a, 2)
    a.start = 2
    saved = a.state_dict()
    after_a = steps(a, 4)
    b = state(seed=99, optimizer=optimizer)  # another latent, init target, generator and optimiser history
    torch.manual_seed(123)  # and another global RNG: the saved one is restored
    b.load_state_dict(saved)
    assert b.step == 5 and b.start == 2 and torch.equal(b.z_init, saved["z_init"])
    assert steps(b, 4) == after_a
    assert torch.equal(a.z, b.z) and torch.equal(a.z_init, b.z_init) and a.step == b.step == 9
    assert torch.equal(a.rng.get_state(), b.rng.get_state())
    assert a.optimizer.state_dict()["state"][0]["step"] == b.optimizer.state_dict()["state"][0]["step"]


def test_a_saved_state_is_a_copy_not_a_view():
    a = state()
    saved = a.state_dict()
    steps(a, 2)
    assert saved["step"] == 0 and not torch.equal(saved["z"], a.z.detach())


def test_a_state_of_another_shape_or_optimizer_is_one_line():
    with pytest.raises(VqclipError, match=r"latent is \[2, 4, 2, 2\] but this job's is \[1, 4, 2, 2\]"):
        state().load_state_dict(state(starts=2).state_dict())
    sgd = state(optimizer="sgd")
    steps(sgd, 1)
    with pytest.raises(VqclipError, match=r"not one of this job's optimizer \(adam\)"):
        state().load_state_dict(sgd.state_dict())


def test_a_move_sets_the_latent_and_the_init_target_and_restarts_the_optimiser_when_asked():
    a = state()
    steps(a, 2)
    moved = torch.full_like(a.z, 0.25)
    a.move_to(moved, reset_optimizer=False)
    assert torch.equal(a.z.detach(), moved) and torch.equal(a.z_init, moved) and a.step == 2
    assert a.optimizer.state_dict()["state"]  # Adam's moments kept
    a.move_to(moved * 2)
    assert torch.equal(a.z_init, moved * 2) and not a.optimizer.state_dict()["state"]  # a fresh optimiser
    assert a.optimizer.param_groups[0]["params"][0] is a.z


def test_a_restart_is_step_0_with_the_generator_seeded_and_a_fresh_optimiser():
    a = state()
    steps(a, 3)
    a.rng.manual_seed(5)
    torch.randint(5, (3,), generator=a.rng)
    a.restart(torch.zeros_like(a.z), 42)
    assert a.step == 0 and torch.equal(a.z_init, torch.zeros_like(a.z)) and not a.optimizer.state_dict()["state"]
    assert torch.equal(a.rng.get_state(), torch.Generator().manual_seed(42).get_state())


def test_keep_goes_on_with_the_chosen_starts_latent_init_target_and_optimiser_rows():
    a = state(starts=3)
    a.z_init = torch.stack([torch.full((4, 2, 2), float(i)) for i in range(3)])  # each start its own init target
    steps(a, 2)
    before = {k: v.clone() for k, v in a.optimizer.state_dict()["state"][0].items()}
    z = a.z.detach().clone()
    a.keep(1)
    assert a.starts == 1 and a.start == 1
    assert torch.equal(a.z.detach(), z[1:2]) and torch.equal(a.z_init, torch.ones(1, 4, 2, 2))
    after = a.optimizer.state_dict()["state"][0]
    assert torch.equal(after["exp_avg"], before["exp_avg"][1:2]) and torch.equal(after["step"], before["step"])
    assert a.optimizer.param_groups[0]["params"][0] is a.z and a.z.requires_grad


def test_the_update_counts_the_step_and_keeps_z_in_the_box():
    a = state()
    a.z.grad = torch.full_like(a.z, -1e6)
    a.optimizer = torch.optim.SGD([a.z], lr=1.0)
    a.update(Toy().project)
    assert a.step == 1 and torch.equal(a.z.detach(), torch.full_like(a.z, 2.0))


def test_run_steps_goes_to_until_or_the_first_step_any_callback_or_hook_stops():
    a = state()
    seen, hooked = [], []
    curve, stopped = run_steps(a, Toy(), lambda s: 0.3, 4, 10, [lambda e: seen.append(e.step)],
                               [lambda st, e: hooked.append(st.step)])
    assert (len(curve), stopped, seen, hooked, a.step) == (4, False, [0, 1, 2, 3], [1, 2, 3, 4], 4)
    curve, stopped = run_steps(a, Toy(), lambda s: 0.3, 4, 10)
    assert (curve, stopped, a.step) == ([], False, 4)  # already there
    seen.clear()
    late = []
    curve, stopped = run_steps(a, Toy(), lambda s: 0.3, 10, 10, [lambda e: e.step == 5, seen.append],
                               [lambda st, e: late.append(e.step)])
    assert stopped and a.step == 6 and len(curve) == 2 and late == [4, 5]  # every callback and hook ran on step 5
    assert [e.step for e in seen] == [4, 5]
    curve, stopped = run_steps(a, Toy(), lambda s: 0.3, 10, 10, [], [lambda st, e: st.step == 7])
    assert stopped and a.step == 7


def test_run_steps_uses_the_scheduled_lr_and_labels_trials_and_frames():
    a, lrs, events = state(), [], []

    def lr_at(step):
        lrs.append(step)
        return 0.1 * (step + 1)

    run_steps(a, Toy(), lr_at, 3, 3, [events.append], trial=2)
    assert lrs == [0, 1, 2] and a.optimizer.param_groups[0]["lr"] == pytest.approx(0.3)
    assert [(e.trial, e.frame, e.total) for e in events] == [(2, None, 3)] * 3
    events.clear()
    run_steps(a, Toy(), lr_at, 4, 3, [events.append], frame=5)
    assert [(e.trial, e.frame) for e in events] == [(0, 5)]


def test_loss_numbers_and_event_losses_read_tensors_and_floats_in_order():
    assert loss_numbers([1.5, torch.tensor(2.0), 3, torch.tensor(4.5)]) == [1.5, 2.0, 3.0, 4.5]
    assert loss_numbers([]) == []
    event = StepEvent(0, 1, torch.tensor(3.0), {"a": torch.tensor(1.0), "b": torch.tensor(2.0)})
    assert event.loss == 3.0 and event.losses == {"a": 1.0, "b": 2.0}


def test_one_saved_state_loaded_twice_goes_on_the_same_way_twice():
    """Loading takes a copy: a run going on from a saved state changes nothing of it (Adam's moments included)."""
    a = state()
    steps(a, 3)
    saved = a.state_dict()
    runs = []
    for _ in range(2):
        b = state(seed=5)
        b.load_state_dict(saved)
        runs.append((steps(b, 3), b.z.detach().clone()))
    assert runs[0][0] == runs[1][0] and torch.equal(runs[0][1], runs[1][1])
