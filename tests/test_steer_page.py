"""A page's job with `steer:` entries (vqclip/ui/jobs.py `check_safe`): their image prompts, masks and prompt regions
are the page's uploads, never files of the server, as the job's own are."""

from __future__ import annotations

import pytest

from vqclip.errors import VqclipError
from vqclip.ui.jobs import check_safe

ID = "0123456789abcdef0123456789abcdef"


def upload(name: str) -> str:
    assert name == ID
    return f"/uploads/{name}.png"


def test_a_steer_entrys_uploads_are_resolved_and_the_rest_kept():
    job = {"prompt": "a red circle", "steer": [{"at": 2, "lr": 0.05}, {"at": 3, "images": [f"upload:{ID}:0.5"],
                                                                         "mask": f"upload:{ID}", "negative": []}]}
    assert check_safe(job, upload)["steer"] == [
        {"at": 2, "lr": 0.05}, {"at": 3, "images": [f"/uploads/{ID}.png:0.5"], "mask": f"/uploads/{ID}.png",
                                "negative": []}]


@pytest.mark.parametrize("entry, key", [
    ({"at": 1, "images": ["/etc/secret.png"]}, r"steer\[0\]\.images\[0\]: the page can use only images uploaded"),
    ({"at": 1, "images": "/etc/secret.png"}, r"steer\[0\]\.images\[0\]: the page can use only"),
    ({"at": 1, "mask": "/etc/mask.png"}, r"steer\[0\]\.mask: the page can use only images uploaded"),
    ({"at": 1, "prompt": "a cat:1@/etc/mask.png"}, r"steer\[0\]\.prompt: the page cannot read mask files"),
    ({"at": 1, "negative": ["a dog:1@/etc/mask.png"]}, r"steer\[0\]\.negative\[0\]: the page cannot read mask"),
])
def test_a_steer_entry_naming_a_file_of_the_server_is_refused_in_one_line(entry, key):
    with pytest.raises(VqclipError, match=key) as err:
        check_safe({"prompt": "a red circle", "steer": [entry]}, upload)
    assert "\n" not in str(err.value)
