"""The shop's home a page at a time, its name search, and the product page's meta tags."""

from __future__ import annotations

from html.parser import HTMLParser

from support import make_product


class Links(HTMLParser):
    """A page's product names, its next-page link and its muted notices."""

    def __init__(self):
        super().__init__()
        self.names, self.next, self.notices, self._in = [], None, [], None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        classes = (attrs.get("class") or "").split()
        if "product-name" in classes:
            self._in = "name"
        elif "muted" in classes and tag == "p":
            self._in = "notice"
        elif tag == "a" and attrs.get("rel") == "next":
            self.next = attrs["href"]

    def handle_data(self, data):
        if self._in == "name":
            self.names.append(data)
        elif self._in == "notice":
            self.notices.append(data)
        self._in = None


def shop(client, path: str = "/test/", **params) -> Links:
    response = client.get(path, params=params or None)
    assert response.status_code == 200
    parsed = Links()
    parsed.feed(response.get_data(as_text=True))
    return parsed


def stock(v1, count: int, name: str = "Item") -> list[str]:
    """`count` account products named `name 0`, `name 1`, ...; their names, newest first."""
    for index in range(count):
        make_product(v1, name=f"{name} {index}", type="account", delivery_text="x")
    return [f"{name} {index}" for index in reversed(range(count))]


def test_thirty_products_are_a_page_of_24_then_one_of_6(client, v1):
    names = stock(v1, 30)
    first = shop(client)
    assert first.names == names[:24] and first.next
    second = shop(client, first.next)
    assert second.names == names[24:] and second.next is None


def test_the_search_matches_names_in_any_case_and_the_next_link_keeps_it(client, v1):
    stock(v1, 3, "Other")
    blue = stock(v1, 26, "Blue hat")
    first = shop(client, q="BLUE")
    assert first.names == blue[:24] and "q=BLUE" in first.next
    assert shop(client, first.next).names == blue[24:]


def test_wildcards_in_a_search_match_only_themselves(client, v1):
    make_product(v1, name="100% cotton", type="account", delivery_text="x")
    make_product(v1, name="1000 cotton", type="account", delivery_text="x")
    make_product(v1, name="a_b", type="account", delivery_text="x")
    make_product(v1, name="axb", type="account", delivery_text="x")
    assert shop(client, q="0%").names == ["100% cotton"]
    assert shop(client, q="a_").names == ["a_b"]


def test_an_empty_result_says_so(client, v1):
    stock(v1, 2)
    page = shop(client, q="nothing like it")
    assert page.names == [] and page.next is None
    assert page.notices == ["No products match “nothing like it”."]


def test_archived_and_draft_products_are_never_shown(client, v1):
    gone = make_product(v1, name="Gone", type="account", delivery_text="x")
    make_product(v1, name="Draft", type="account", delivery_text="x", status="draft")
    make_product(v1, name="Kept", type="account", delivery_text="x")
    assert v1.delete(f"/v1/products/{gone['id']}").status_code == 200
    assert shop(client).names == ["Kept"]
    assert shop(client, q="Gone").names == []


def test_each_mode_shows_its_own_products(client, v1):
    live = client.keyed(mode="live")
    stock(v1, 25, "Test")
    make_product(live, name="Live one", type="account", delivery_text="x")
    assert shop(client, "/").names == ["Live one"] and shop(client, "/").next is None
    test_page = shop(client)
    assert "Live one" not in test_page.names
    assert client.get(test_page.next.replace("/test/", "/", 1)).status_code == 404


def test_a_forged_cursor_is_not_found(client, v1):
    stock(v1, 1)
    assert client.get("/test/", params={"cursor": "forged"}).status_code == 404


class Head(HTMLParser):
    """A page's <title>, and its meta tags by name or property."""

    def __init__(self):
        super().__init__()
        self.title, self.meta, self.canonical, self._in_title = "", {}, None, False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "meta" and (attrs.get("name") or attrs.get("property")):
            self.meta[attrs.get("name") or attrs["property"]] = attrs["content"]
        elif tag == "link" and attrs.get("rel") == "canonical":
            self.canonical = attrs["href"]
        self._in_title = tag == "title"

    def handle_data(self, data):
        if self._in_title:
            self.title += data

    def handle_endtag(self, tag):
        self._in_title = False


def public_url(client) -> str:
    return client.application.extensions["sellix"].config.public_url


def head_of(client, path: str) -> Head:
    response = client.get(path)
    assert response.status_code == 200
    head = Head()
    head.feed(response.get_data(as_text=True))
    return head


def test_a_product_page_carries_its_title_description_and_open_graph_tags(client, v1):
    product = make_product(v1, name='Tom & "Jerry" <Box>', type="account", delivery_text="x",
                           description="**Bold** claim & <script>x</script> [a link](https://e.x)")
    head = head_of(client, f"/test/product/{product['slug']}")
    text = "Bold claim & <script>x</script> a link"
    assert head.title == 'Tom & "Jerry" <Box> · sellix-lite shop'
    assert {name: head.meta[name] for name in head.meta if name != "viewport"} == {
        "description": text, "og:type": "product",
                         "og:site_name": "sellix-lite shop", "og:title": 'Tom & "Jerry" <Box>',
                         "og:description": text,
                         "og:url": f"{public_url(client)}/test/product/{product['slug']}"}
    assert head.canonical == head.meta["og:url"]


def test_a_long_description_is_cut_at_a_word_under_160_characters(client, v1):
    words = " ".join(f"word{index}" for index in range(60))
    product = make_product(v1, type="account", delivery_text="x", description=words)
    description = head_of(client, f"/test/product/{product['slug']}").meta["description"]
    assert len(description) <= 160 and description.endswith("…")
    assert words.startswith(description[:-1]) and words[len(description) - 1] == " "


def test_the_live_page_url_has_no_test_prefix(client):
    product = make_product(client.keyed(mode="live"), type="account", delivery_text="x")
    head = head_of(client, f"/product/{product['slug']}")
    assert head.meta["og:url"] == f"{public_url(client)}/product/{product['slug']}"


def test_a_product_without_a_description_is_described_by_its_name(client, v1):
    product = make_product(v1, name="Plain key", type="account", delivery_text="x")
    head = head_of(client, f"/test/product/{product['slug']}")
    assert head.meta["description"] == head.meta["og:description"] == "Plain key"
