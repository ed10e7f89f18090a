"""Product images: upload, recognition by bytes, limits, serving and the shop's pages."""

from __future__ import annotations

import hashlib
import io

import pytest
import requests

from conftest import assert_problem
from support import json_body, make_product

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 100
JPEG = b"\xff\xd8\xff\xe0" + b"\x01" * 100
WEBP = b"RIFF\x10\x00\x00\x00WEBPVP8 " + b"\x02" * 100
FIVE_MB = 5 * 1024 * 1024


def upload(v1, product_id: str, data: bytes, **kwargs):
    return v1.put(f"/v1/products/{product_id}/image", data=data,
                  content_type="application/octet-stream", **kwargs)


@pytest.mark.parametrize(("data", "kind", "content_type"), [
    (PNG, "png", "image/png"), (JPEG, "jpeg", "image/jpeg"), (WEBP, "webp", "image/webp")])
def test_an_image_is_known_by_its_bytes_and_served_for_ever(client, v1, data, kind,
                                                              content_type):
    product = make_product(v1, type="account", delivery_text="x")
    shown = json_body(upload(v1, product["id"], data))
    assert shown["image_url"] == f"/media/{hashlib.sha256(data).hexdigest()}.{kind}"
    served = client.get(shown["image_url"])
    assert served.status_code == 200 and served.data == data
    assert served.headers["Content-Type"] == content_type
    assert served.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    assert served.headers["X-Content-Type-Options"] == "nosniff"
    assert "object-src 'none'" in served.headers["Content-Security-Policy"]
    assert json_body(v1.get(f"/v1/products/{product['id']}"))["image_url"] == shown["image_url"]


def test_a_multipart_upload_works_and_its_name_does_not_matter(client, v1):
    product = make_product(v1, type="account", delivery_text="x")
    shown = json_body(v1.put(f"/v1/products/{product['id']}/image",
                             data={"file": (io.BytesIO(PNG), "photo.jpg")}))
    assert shown["image_url"].endswith(".png")


@pytest.mark.parametrize("data", [b"GIF89a" + b"\x00" * 50, b"<svg onload=alert(1)>",
                                  b"<html><script>alert(1)</script>", b"RIFF\x00\x00\x00\x00WAVE"])
def test_anything_else_is_refused_with_422(v1, app, data):
    product = make_product(v1, type="account", delivery_text="x")
    body = assert_problem(upload(v1, product["id"], data), 422, "unprocessable")
    assert body["errors"] == {"image": "is not a PNG, JPEG or WebP image"}
    media = app.extensions["sellix"].config.files_dir / "media"
    assert list(media.iterdir()) == []


def test_more_than_5_mb_is_refused_with_422_and_5_mb_is_taken(v1):
    product = make_product(v1, type="account", delivery_text="x")
    body = assert_problem(upload(v1, product["id"], PNG.ljust(FIVE_MB + 1, b"\x00")), 422,
                          "unprocessable")
    assert body["errors"] == {"image": "is larger than 5 MB"}
    assert json_body(upload(v1, product["id"], PNG.ljust(FIVE_MB, b"\x00")))["image_url"]


def test_removing_or_replacing_the_image_drops_its_file_once_unused(client, v1):
    first = make_product(v1, type="account", delivery_text="x")
    second = make_product(v1, type="account", delivery_text="x")
    url = json_body(upload(v1, first["id"], PNG))["image_url"]
    json_body(upload(v1, second["id"], PNG))
    assert json_body(v1.delete(f"/v1/products/{first['id']}/image"))["image_url"] is None
    assert client.get(url).status_code == 200  # the second product still shows it
    json_body(upload(v1, second["id"], JPEG))
    assert client.get(url).status_code == 404


def test_uploading_needs_products_write(client, v1):
    product = make_product(v1, type="account", delivery_text="x")
    reader = client.keyed("products:read")
    assert upload(reader, product["id"], PNG).status_code == 403


def test_a_stored_image_is_not_served_under_another_type(client, v1):
    product = make_product(v1, type="account", delivery_text="x")
    url = json_body(upload(v1, product["id"], PNG))["image_url"]
    assert client.get(url.replace(".png", ".webp")).status_code == 404
    assert client.get("/media/../../secret.png").status_code == 404


def test_the_shop_shows_the_image_and_shares_it(client, v1):
    product = make_product(v1, type="account", delivery_text="x")
    url = json_body(upload(v1, product["id"], WEBP))["image_url"]
    home = client.get("/test/").get_data(as_text=True)
    assert f'src="{url}"' in home
    page = client.get(f"/test/product/{product['slug']}").get_data(as_text=True)
    public_url = client.application.extensions["sellix"].config.public_url
    assert f'<meta property="og:image" content="{public_url}{url}">' in page


def test_through_the_real_server_a_large_image_is_a_422_and_images_are_served(server, api):
    product = make_product(api, type="account", delivery_text="x")
    path = f"/v1/products/{product['id']}/image"
    too_large = api.put(path, data=PNG.ljust(FIVE_MB + 1, b"\x00"))
    assert too_large.status_code == 422, too_large.text
    url = json_body(api.put(path, data=JPEG))["image_url"]
    served = requests.get(server.url + url, timeout=30)
    assert served.content == JPEG and served.headers["Content-Type"] == "image/jpeg"
