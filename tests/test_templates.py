"""The template environment: a subscript on a mapping reads its items, never its methods."""

from __future__ import annotations

import pytest

from sellix_lite.config import config_from_dict
from sellix_lite.web.app import create_app


@pytest.mark.parametrize("name", ["keys", "items", "values", "get", "copy", "pop"])
def test_a_missing_item_named_like_a_dict_method_is_undefined(name):
    env = create_app(config_from_dict({}), "k" * 40).jinja_env
    template = env.from_string(
        "{% if d[name] %}{% for x in d[name] %}{{ x }}{% endfor %}{% else %}none{% endif %}")
    assert template.render(d={"text": "login"}, name=name) == "none"
    assert template.render(d={name: ["A", "B"]}, name=name) == "AB"
    assert env.from_string("{{ d.text }}").render(d={"text": "login"}) == "login"
