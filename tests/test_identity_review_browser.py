"""The review page in a real headless Chromium (Playwright driving Debian's chromium):
open, rename a cluster, merge two, move an image, undo, reload, then check the page and the
catalog; a path-traversal request gets a 404."""

from __future__ import annotations

import os
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from identity_project import add_instances, make_project, run_identity
from identity_synth import CHARACTERS, dataset

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium (apt-get install chromium)"
)


@contextmanager
def _serve(ws):
    import uvicorn

    from animlora.review.app import create_app, free_port
    from animlora.review.service import ReviewService

    port = free_port("127.0.0.1")
    app = create_app(ReviewService(ws), page_size=8, thumb_size=96)
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not srv.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert srv.started
    try:
        yield f"http://127.0.0.1:{port}", app.state.token
    finally:
        srv.should_exit = True
        thread.join(timeout=10)


def _wait(page, expression: str, timeout: float = 20.0) -> None:
    """page.wait_for_function without eval: the page's CSP forbids 'unsafe-eval'."""
    deadline = time.monotonic() + timeout
    while not page.evaluate(expression):
        assert time.monotonic() < deadline, f"timed out waiting for {expression}"
        time.sleep(0.05)


def _launch(pw):
    return pw.chromium.launch(
        executable_path=str(CHROMIUM), headless=True,
        args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
              "--disable-sync", "--no-first-run"],
    )


def _clustered(root: Path, per_character: int):
    """A project of the synthetic characters, embedded and clustered."""
    ws = make_project(root)
    images, labels, _ = dataset(per_character=per_character, seed=0)
    add_instances(ws, images, [f"{CHARACTERS[lab].name}_{n:03d}" for n, lab in enumerate(labels)])
    run_identity(ws)
    return ws


@pytest.fixture
def server(tmp_path):
    ws = _clustered(tmp_path / "p", 15)
    with _serve(ws) as (url, token):
        yield ws, url, token


def _members(ws):
    with ws.open_catalog() as catalog:
        return dict(catalog.rows("SELECT instance_id, character FROM character_members"))


def _count(page, name: str) -> str:
    return page.locator("#clusters li", has=page.locator(".name", has_text=name)).locator(".count").inner_text()


def test_review_page_in_chromium(server, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api")
    ws, url, token = server
    with sync_api.sync_playwright() as pw:
        browser = _launch(pw)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.goto(f"{url}/?token={token}")
            items = page.locator("#clusters li")
            items.nth(4).wait_for()
            assert items.count() == 5  # four characters + noise
            assert "Ctrl" in page.locator("#help").inner_text()  # shortcuts shown on the page
            # the overview: one card per non-empty cluster, with its count and a strip of thumbnails
            cards = page.locator("#overview .card")
            cards.nth(3).wait_for()
            assert cards.count() == 4 and "15 images" in cards.first.inner_text()
            assert cards.first.locator("img").count() == 6
            # every thumbnail arrives and decodes
            _wait(page,
                "[...document.querySelectorAll('#overview img')].every(i => i.complete && i.naturalWidth === 96)")
            shot = os.environ.get("ANIMLORA_REVIEW_SCREENSHOT")
            if shot:
                page.screenshot(path=shot.replace(".png", "_overview.png"))

            # 1. rename the red character's cluster (opened from the list: a lazy, paginated grid)
            pages: list[str] = []
            page.on("request", lambda r: pages.append(r.url) if "/members?" in r.url else None)
            red = page.locator("#clusters li", has=page.locator("img[src*='round_red']"))
            red.click()
            _wait(page, "document.querySelectorAll('#grid figure').length === 15")
            assert page.locator("#grid img").first.get_attribute("loading") == "lazy"
            assert [u.split("offset=")[1].split("&")[0] for u in pages] == ["0", "8"]  # 8 per page
            page.fill("#rename-input", "luca")
            page.click("#rename-btn")
            page.locator("#clusters li .name", has_text="luca").wait_for()
            # 2. merge the blue one into it (check it, merge into the open cluster)
            blue = page.locator("#clusters li", has=page.locator("img[src*='round_blue']"))
            blue.locator("input.pick").click()
            page.click("#merge-btn")
            _wait(page, "document.querySelectorAll('#clusters li').length === 4")
            assert _count(page, "luca") == "30"
            # 3. move one image to another cluster
            page.locator("#grid figure").first.click()
            assert page.inner_text("#sel-count") == "1 selected"
            page.click("#move-btn")
            _wait(page, "[...document.querySelectorAll('#clusters li')].some(li => li.querySelector('.count').textContent === '29')")
            moved_members = _members(ws)
            assert sum(1 for c in moved_members.values() if c == "luca") == 29
            # 4. undo (keyboard shortcut)
            page.locator("body").click(position={"x": 1, "y": 1})
            page.keyboard.press("Control+z")
            _wait(page, "[...document.querySelectorAll('#clusters li')].some(li => li.querySelector('.count').textContent === '30')")
            # 5. reload: the page shows what the catalog holds
            page.reload()
            page.locator("#clusters li .name", has_text="luca").wait_for()
            assert items.count() == 4 and _count(page, "luca") == "30"
            members = _members(ws)
            assert sorted(i for i, c in members.items() if c == "luca") == sorted(
                f"{name}_{n:03d}" for name, r in (("round_blue", range(0, 15)), ("round_red", range(15, 30))) for n in r)
            # scrolling the grid loads the next pages
            page.locator("#clusters li .name", has_text="luca").click()
            _wait(page, "document.querySelectorAll('#grid figure').length >= 8")
            for _ in range(10):
                page.mouse.move(700, 500)
                page.mouse.wheel(0, 3000)
                page.wait_for_timeout(150)
                if page.locator("#grid figure").count() == 30:
                    break
            assert page.locator("#grid figure").count() == 30
            page.screenshot(path=shot or str(tmp_path / "review.png"))
            # 6. traversal from the browser's own request context
            for bad in ("/files/%2e%2e/%2e%2e/%2e%2e/etc/passwd", "/files/..%2f..%2f..%2fetc%2fpasswd"):
                assert page.request.get(url + bad).status == 404
            assert page.request.get(url + "/files/clustered/cluster_report.json").status == 200
        finally:
            browser.close()


def test_caption_edit_in_chromium(tmp_path):
    """Captions mode: the grid shows each image's caption; one is edited inline and saved."""
    sync_api = pytest.importorskip("playwright.sync_api")
    from animlora.catalog import now
    from animlora.records.caption import get_caption

    ws = _clustered(tmp_path / "p", 6)
    members = _members(ws)
    with ws.open_catalog() as catalog:  # the caption stage's rows (it needs source frames, absent here)
        catalog.upsert("captions", [{
            "instance_id": iid, "character": char, "text": f"{char}, 3d render, standing", "source": "template",
            "fields": {}, "edited": 0, "accepted": 0, "auto_text": None, "confidence": 0.9, "note": None,
            "updated_at": now(),
        } for iid, char in members.items()])
    with _serve(ws) as (url, token), sync_api.sync_playwright() as pw:
        browser = _launch(pw)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.goto(f"{url}/?token={token}")
            assert "captions mode" in page.locator("#help").inner_text()
            first = page.locator("#clusters li:not(.noise)").first
            size = int(first.locator(".count").inner_text())
            assert size > 0
            first.click()
            _wait(page, f"document.querySelectorAll('#grid figure .cap').length === {size}")
            assert "3d render" in page.locator("#grid figure .cap").first.inner_text()
            page.keyboard.press("t")  # captions mode
            fig = page.locator("#grid figure").first
            inst = fig.get_attribute("data-id")
            fig.locator("textarea").fill("luca, laughing on a vespa")
            fig.locator("textarea").press("Control+Enter")
            _wait(page, "document.querySelector('#grid figure .cap').classList.contains('edited')")
            assert fig.locator("button", has_text="Revert").is_enabled()
            assert page.inner_text("#sel-count") == "0 selected"  # editing did not select the image
            with ws.open_catalog() as catalog:
                row = get_caption(catalog, inst, members[inst])
            assert row.edited and row.text == "luca, laughing on a vespa"
            shot = os.environ.get("ANIMLORA_REVIEW_SCREENSHOT")
            if shot:
                page.screenshot(path=shot.replace(".png", "_captions.png"))
            # an empty edit is refused with the server's reason
            fig.locator("textarea").fill("  ")
            fig.locator("button", has_text="Save").click()
            _wait(page, "document.querySelector('#status').classList.contains('error')")
            assert "empty" in page.inner_text("#status")
        finally:
            browser.close()


def test_suggest_from_noise_in_chromium(tmp_path):
    """Suggest from noise: the red images sent to noise are offered under the red cluster, one box
    per unit; picking two and adding them moves them back (page and catalog), the third stays."""
    sync_api = pytest.importorskip("playwright.sync_api")
    from animlora.review.service import ReviewService

    ws = _clustered(tmp_path / "p", 8)
    service = ReviewService(ws)
    red = next(c for c in service.summary()["clusters"] if (c["medoid"] or "").startswith("round_red"))
    far = service.members(red["id"], 0, 100)["items"][-3:]
    service.move(far, "noise")
    with _serve(ws) as (url, token), sync_api.sync_playwright() as pw:
        browser = _launch(pw)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.goto(f"{url}/?token={token}")
            page.locator("#clusters li:not(.noise)", has=page.locator("img[src*='round_red']")).click()
            _wait(page, "document.querySelectorAll('#grid figure').length === 5")
            page.keyboard.press("g")
            _wait(page, "document.querySelectorAll('#suggest .track').length === 3")
            assert "3 noise tracks (3 images)" in page.inner_text("#suggest-info")
            shown = [page.locator("#suggest .track img").nth(k).get_attribute("alt") for k in range(3)]
            assert sorted(shown) == sorted(far)
            assert page.locator("#suggest-add").is_disabled()
            page.locator("#suggest .track").nth(0).click()
            page.locator("#suggest .track").nth(1).click()
            page.click("#suggest-add")
            _wait(page, "document.querySelectorAll('#grid figure').length === 7")
            _wait(page, "document.querySelectorAll('#suggest .track').length === 1")
            assert _count(page, "noise") == "1"
            members = _members(ws)
            assert sorted(i for i, c in members.items() if i in far and c == red["name"]) == sorted(shown[:2])
            shot = os.environ.get("ANIMLORA_REVIEW_SCREENSHOT")
            if shot:
                page.screenshot(path=shot.replace(".png", "_suggest.png"))
        finally:
            browser.close()


def test_same_character_pairs_in_chromium(tmp_path):
    """Same character?: a character split in two is the first pair above the overview; "Not the
    same" sets a pair aside, "Merge" joins the red halves (page and catalog)."""
    sync_api = pytest.importorskip("playwright.sync_api")
    from animlora.review.service import ReviewService

    ws = _clustered(tmp_path / "p", 8)
    service = ReviewService(ws)
    red = next(c for c in service.summary()["clusters"] if (c["medoid"] or "").startswith("round_red"))
    service.split(red["id"], 2)
    halves = {c["name"] for c in service.summary()["clusters"] if c["name"].startswith(red["name"])}
    assert len(halves) == 2
    with _serve(ws) as (url, token), sync_api.sync_playwright() as pw:
        browser = _launch(pw)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.goto(f"{url}/?token={token}")
            _wait(page, "document.querySelectorAll('#alike .pair').length === 8")
            assert page.locator("#alike").is_visible() and "Same character?" in page.inner_text("#alike .head")

            def names(k: int) -> set[str]:
                spans = page.locator("#alike .pair").nth(k).locator(".side span")
                return {spans.nth(j).inner_text().rsplit(" (", 1)[0] for j in range(2)}

            assert names(0) == halves
            assert page.locator("#alike .pair").nth(0).locator("img").count() == 8
            rows = "[...document.querySelectorAll('#alike .pair')].map((r) => r.innerText)"
            before = page.evaluate(rows)
            shot = os.environ.get("ANIMLORA_REVIEW_SCREENSHOT")
            if shot:
                page.screenshot(path=shot.replace(".png", "_alike.png"), full_page=True)
            # "Not the same" on the second pair: it goes, the first stays, the list is filled up again
            page.locator("#alike .pair").nth(1).locator("button", has_text="Not the same").click()
            _wait(page, f"{rows}[1] !== {before[1]!r}")
            after = page.evaluate(rows)
            assert len(after) == 8 and after[0] == before[0] and before[1] not in after and after[1] == before[2]
            kept = page.locator("#alike .pair").nth(0).locator(".side span").nth(0).inner_text().rsplit(" (", 1)[0]
            page.locator("#alike .pair").nth(0).locator("button", has_text="Merge").click()
            _wait(page, "document.querySelector('#status').textContent.startsWith('merged')")
            assert page.locator("#clusters li", has=page.locator(".name", has_text=kept)).count() == 1
            assert _count(page, kept) == "8"
            assert sum(1 for c in _members(ws).values() if c == kept) == 8
            assert not any(halves <= names(k) for k in range(page.locator("#alike .pair").count()))
        finally:
            browser.close()
