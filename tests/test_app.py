"""The app factory's own parts: URL rules that compile their URL builders when first used."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from werkzeug.routing import IntegerConverter, Map, Rule

from sellix_lite.config import config_from_dict
from sellix_lite.web.app import create_app


def sample_values(rule: Rule) -> dict:
    values = {name: 7 if isinstance(rule._converters.get(name), IntegerConverter)
              else f"v-{name}" for name in rule.arguments}
    return {**values, **(rule.defaults or {})}


def app_and_werkzeug_adapters():
    """URL adapters of the app's rules, and of werkzeug's own Rule built from the same."""
    app = create_app(config_from_dict({}), "k" * 40)
    rules = list(app.url_map.iter_rules())
    eager = Map([Rule(rule.rule, endpoint=rule.endpoint, methods=rule.methods,
                      defaults=rule.defaults) for rule in rules])
    return rules, app.url_map.bind("shop.example"), eager.bind("shop.example")


def test_every_route_builds_the_url_werkzeugs_own_rules_build():
    rules, ours, werkzeugs = app_and_werkzeug_adapters()
    assert len(rules) > 50
    for rule in rules:
        for extra in ({}, {"page": "2"}):  # values without a place go to the query string
            values = {**sample_values(rule), **extra}
            assert ours.build(rule.endpoint, values) == werkzeugs.build(rule.endpoint, values)


def test_a_url_first_built_by_several_threads_at_once_is_right_in_each():
    rules, ours, werkzeugs = app_and_werkzeug_adapters()
    rule = next(rule for rule in rules if rule.arguments)
    values = sample_values(rule)
    with ThreadPoolExecutor(8) as pool:
        built = set(pool.map(lambda _: ours.build(rule.endpoint, values), range(64)))
    assert built == {werkzeugs.build(rule.endpoint, values)}
