"""The README and docs/ link only to files that exist (images, result files, other pages)."""
import os
import re

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAGES = ["README.md"] + sorted(os.path.join("docs", f) for f in os.listdir(os.path.join(REPO, "docs"))
                               if f.endswith(".md"))


@pytest.mark.parametrize("page", PAGES)
def test_relative_links_resolve(page):
    text = open(os.path.join(REPO, page)).read()
    base = os.path.dirname(os.path.join(REPO, page))
    targets = [t.split("#")[0] for t in re.findall(r"\]\(([^)\s]+)\)", text)
               if not t.startswith(("http://", "https://", "#", "mailto:"))]
    assert targets or page != "README.md"
    missing = [t for t in targets if not os.path.exists(os.path.normpath(os.path.join(base, t)))]
    assert not missing, f"{page} links to missing files: {missing}"
