"""A run's job for "edit and run again" as the page gets it: JSON text made inside the checking process's bound
(`edit_job_json`), never a structure the server would serialise outside it; refused past its size limit."""

import json

import pytest

from vqclip.errors import VqclipError
from vqclip.ui import gallery


def test_a_runs_job_comes_back_as_json_text_of_the_edit_and_is_refused_past_the_limit(tmp_path):
    outputs = (tmp_path / "outputs").resolve()
    (outputs / "run").mkdir(parents=True)
    (outputs / "run" / "job.yaml").write_text("model: mini\nprompt: a red circle\nsteps: 7\n")
    text = gallery.edit_job_json(outputs, outputs / "run")
    assert isinstance(text, str) and json.loads(text) == gallery.edit_job(outputs, outputs / "run")
    assert json.loads(text)["job"]["steps"] == 7
    assert gallery.edit_job_json(outputs, outputs / "run", limit=len(text)) == text  # the limit itself is allowed
    with pytest.raises(VqclipError, match="KB as JSON"):
        gallery.edit_job_json(outputs, outputs / "run", limit=len(text) - 1)
