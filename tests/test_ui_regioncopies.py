"""A page's re-run may name a run's own region mask copies (<outputs>/<run>/regions/<i>.png, as its job.yaml names
them) and no other file of the server: each way out of the outputs folder is refused."""

from __future__ import annotations

import pytest
from PIL import Image

from vqclip.errors import VqclipError
from vqclip.ui.jobs import Uploads, check_safe


@pytest.fixture
def outputs(tmp_path):
    """An outputs folder with its uploads, a run's regions/1.png, a secret beside it and a link leading out."""
    out = tmp_path / "outputs"
    (out / ".uploads").mkdir(parents=True)
    (out / "run" / "regions").mkdir(parents=True)
    (tmp_path / "secret" / "regions").mkdir(parents=True)
    for path in (out / "run" / "regions" / "1.png", tmp_path / "secret" / "regions" / "1.png"):
        Image.new("L", (4, 4), 255).save(path)
    (out / "link").symlink_to(tmp_path / "secret")
    return out


def test_a_runs_own_region_copy_passes(outputs):
    prompt = f"a red square:1@{outputs / 'run' / 'regions' / '1.png'}"
    assert check_safe({"prompt": prompt}, Uploads(outputs / ".uploads"))["prompt"] == prompt


@pytest.mark.parametrize("where", ["{tmp}/secret/regions/1.png", "{out}/../secret/regions/1.png",
                                   "{out}/link/regions/1.png", "{out}/run/regions/secret.png",
                                   "{out}/run/regions/0.png", "{out}/run/other/1.png", "regions/1.png"])
def test_any_other_file_is_refused(outputs, where):
    path = where.format(tmp=outputs.parent, out=outputs)
    with pytest.raises(VqclipError, match="cannot read mask files"):
        check_safe({"prompt": f"a red square:1@{path}"}, Uploads(outputs / ".uploads"))
