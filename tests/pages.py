"""Reading the storefront's pages in tests."""

from __future__ import annotations

import re


def ticked_link(page: str, label: str) -> str | None:
    """The address of the ticked facet value ``label`` on a search page (what unticking it opens), or None."""
    found = re.search(
        r'<a href="([^"]+)" rel="nofollow" aria-current="true"><span class="mm-check" aria-hidden="true">☑</span> '
        + re.escape(label)
        + "</a>",
        page,
    )
    return found.group(1) if found is not None else None
