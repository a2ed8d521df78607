"""The page's image editor, server side: the static files it needs are served, and the form tells the browser which
list fields hold numbers (the editor writes `init.extend` as one)."""

from __future__ import annotations

from typing import Optional

import pytest

pytest.importorskip("fastapi", reason="the web page's server needs vqclip[ui]")

from fastapi.testclient import TestClient  # noqa: E402

from vqclip.ui.options import form_options, item_type  # noqa: E402
from vqclip.ui.server import create_app  # noqa: E402


def test_item_type_names_the_items_of_a_list_and_nothing_else():
    assert item_type(list[int]) == "int" and item_type(Optional[list[float]]) == "float"
    assert item_type(list[str]) == "str"
    assert item_type(int) is None and item_type(Optional[str]) is None and item_type(list) is None


def test_the_form_says_which_lists_hold_numbers():
    items = {o["key"]: o["items"] for o in form_options()}
    assert items["size"] == "int" and items["init.color"] == "float"
    assert items["cutouts.augments"] == "str" and items["steps"] is None


def test_the_editor_script_is_served_and_loaded_before_the_page_script(tmp_path):
    client = TestClient(create_app(tmp_path))
    html = client.get("/").text
    assert html.index('src="/static/editor.js"') < html.index('src="/static/app.js"')
    js = client.get("/static/editor.js")
    assert js.status_code == 200 and "beforeSubmit" in js.text
    for id_ in ("ed-mask", "ed-image", "ed-size", "ed-hardness", "ed-erase", "ed-clear", "cmp-slider", "d-paint"):
        assert f'id="{id_}"' in html
