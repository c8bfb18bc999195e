"""Per-app error and maintenance page URLs: parsing and the page served."""

from __future__ import annotations

import json
from typing import Any

import pytest

from dynod.router.hcodes import HCODES, page_for
from dynod.router.table import parse_table


def _table(pages: Any) -> bytes:
    entry = {"hosts": ["p.localhost"], "state": "running", "pages": pages}
    return json.dumps({"version": 1, "apps": {"p": entry}}).encode()


def test_pages_are_parsed_and_optional() -> None:
    url = "https://example.test/oops.html"
    app = parse_table(_table({"error": url})).lookup("p.localhost")
    assert app is not None and dict(app.pages) == {"error": url}
    plain = parse_table(
        json.dumps(
            {
                "version": 1,
                "apps": {"q": {"hosts": ["q.localhost"], "state": "running"}},
            }
        ).encode()
    ).lookup("q.localhost")
    assert plain is not None and dict(plain.pages) == {}


@pytest.mark.parametrize(
    "pages",
    [
        [],
        {"error": "ftp://example.test/x"},
        {"error": "javascript:alert(1)"},
        {"error": "https://exa mple.test/"},
        {"other": "https://example.test/"},
        {"error": 7},
    ],
)
def test_a_bad_page_drops_only_that_app(pages: Any) -> None:
    table = parse_table(_table(pages))
    assert table.lookup("p.localhost") is None
    assert len(table.rejected) == 1 and "'p'" in table.rejected[0]


def test_the_page_refreshes_to_the_app_url_escaped() -> None:
    pages = {
        "error": "https://example.test/e?a=1&b=\"'<x>",
        "maintenance": "http://example.test/m",
    }
    body = page_for(HCODES["H10"], pages).decode()
    assert (
        'content="0; url=https://example.test/e?a=1&amp;b=&quot;&#x27;&lt;x&gt;"'
        in body
    )
    assert "<x>" not in body
    assert "http://example.test/m" in page_for(HCODES["H80"], pages).decode()
    # Only 503 pages are the app's: a refused request keeps the router's page.
    assert "example.test" not in page_for(HCODES["H26"], pages).decode()
    # Without an override, the router's own pages.
    assert (
        "Offline for maintenance"
        in page_for(HCODES["H80"], {"error": "http://a/"}).decode()
    )
