"""The mini CLIP's own contrastive loss (soft targets over every true pair, extra negatives) is open_clip's ClipLoss
when each caption is true of its own image only and there are no extra negatives."""
import torch
import torch.nn.functional as F
from open_clip.loss import ClipLoss

from vqclip.mini.train.clip import contrastive_loss


def test_the_mini_loss_is_open_clips_on_one_true_pair_per_row():
    torch.manual_seed(0)
    img, txt = F.normalize(torch.randn(5, 8), dim=-1), F.normalize(torch.randn(5, 8), dim=-1)
    scale = torch.tensor(2.5)
    mini = contrastive_loss(img, txt, scale, torch.eye(5, dtype=torch.bool))
    assert torch.allclose(mini, ClipLoss()(img, txt, scale.exp()), atol=1e-6)
    pos = torch.eye(5, dtype=torch.bool)
    pos[0, 1] = pos[1, 0] = True  # two alike captions: the soft targets part from open_clip's
    assert not torch.allclose(contrastive_loss(img, txt, scale, pos), mini)
