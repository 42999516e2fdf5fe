"""The storefront in a real browser (headless Chromium driven by Selenium against pytest-django's live
server): words in the header box, a facet, sort by price, page 2, a photo from the header box refined with
a word, and a product page with similar products. Screenshots of every step go to test-output/browser/.

Needs Debian's ``chromium`` and ``chromium-driver`` (.ci/run installs them); skipped where they are missing.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from django.conf import settings as django_settings
from django.urls import URLPattern, URLResolver, re_path
from django.views.static import serve
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import Select, WebDriverWait

from shop.catalog.models import Category, Product
from shop.urls import urlpatterns as shop_urlpatterns
from tests.factories import ProductFactory, photo_bytes

CHROMIUM = next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)
CHROMEDRIVER = shutil.which("chromedriver")
SCREENSHOTS = Path(__file__).resolve().parent.parent / "test-output" / "browser"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not (CHROMIUM and CHROMEDRIVER),
        reason="needs Chromium and chromedriver (Debian: apt-get install chromium chromium-driver)",
    ),
]

# The demo's URLs, plus the catalogue photos even with DEBUG off, so the screenshots show them.
urlpatterns: list[URLPattern | URLResolver] = [
    *shop_urlpatterns,
    re_path(r"^media/(?P<path>.*)$", serve, {"document_root": django_settings.MEDIA_ROOT}),
]

# colour, price, category leaf, title: seven black items, so a black filter at four a page has two pages
SPECS = [
    ("Black", "39.00", "Jackets", "Alpha Jacket"),
    ("Black", "59.00", "Jackets", "Beta Jacket"),
    ("Black", "65.00", "Jackets", "Zeta Jacket"),
    ("Black", "49.99", "Jackets", "Iota Jacket"),
    ("Black", "50.00", "Jackets", "Mu Jacket"),
    ("Black", "28.00", "Jackets", "Nu Rain Jacket"),
    ("Black", "72.00", "Jackets", "Xi Winter Jacket"),
    ("Blue", "45.00", "Jackets", "Gamma Jacket"),
    ("Red", "57.00", "Jackets", "Delta Jacket"),
    ("Red", "18.50", "Tees", "Eta Tee"),
    ("Green", "120.00", "Jackets", "Theta Parka Jacket"),
    ("Blue", "30.00", "Bags", "Kappa Bag"),
]
PAGE_SIZE = 4


@pytest.fixture
def storefront(live_server: Any, indexed: Callable[..., Any], model_dir: Path, settings: Any) -> str:
    settings.ROOT_URLCONF = __name__
    settings.MULTIMODAL_SEARCH = {**settings.MULTIMODAL_SEARCH, "FACETS": {"PAGE_SIZE": PAGE_SIZE}}
    categories = {leaf: Category.from_path(f"Men > {leaf}") for leaf in {spec[2] for spec in SPECS}}
    products = [
        ProductFactory(
            title=title, color=colour, price=Decimal(price), category=categories[leaf], photos=[colour.lower()]
        )
        for colour, price, leaf, title in SPECS
    ]
    indexed(*products)
    return str(live_server.url)


@pytest.fixture
def browser() -> Iterator[WebDriver]:
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,1000"):
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=str(CHROMEDRIVER)))
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


class Shopper:
    """One browser tab on the storefront: each step waits for the next page and saves a screenshot."""

    def __init__(self, driver: WebDriver, base_url: str) -> None:
        self.driver = driver
        self.base_url = base_url
        self.wait = WebDriverWait(driver, 15)
        self.shots = 0
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        for old in SCREENSHOTS.glob("*.png"):
            old.unlink()

    def open(self, path: str) -> None:
        self.driver.get(self.base_url + path)
        self.loaded()

    def leaves_page(self, action: Callable[[], Any]) -> None:
        """Run ``action`` and wait until the next page has loaded."""
        old = self.driver.find_element(By.TAG_NAME, "html")
        action()
        self.wait.until(ec.staleness_of(old))
        self.loaded()

    def loaded(self) -> None:
        self.wait.until(lambda driver: driver.execute_script("return document.readyState") == "complete")

    def shot(self, name: str) -> Path:
        self.shots += 1
        path = SCREENSHOTS / f"{self.shots:02d}-{name}.png"
        assert self.driver.save_screenshot(str(path)), path
        return path

    def params(self) -> dict[str, list[str]]:
        return parse_qs(urlsplit(self.driver.current_url).query)

    def search_with_box(self) -> None:
        self.leaves_page(
            self.driver.find_element(By.CSS_SELECTOR, "form[data-mm-search-box] button[type=submit]").click
        )

    def cards(self) -> list[dict[str, str]]:
        """Title, colour and price of each result card, in order."""
        script = """
            return Array.from(document.querySelectorAll('.mm-card')).map(card => ({
                title: card.querySelector('a.title').textContent.trim(),
                colour: (card.querySelector('.info > div.muted') || {textContent: ''}).textContent.trim(),
                price: (card.querySelector('.price') || {textContent: ''}).textContent.trim(),
            }));"""
        return list(self.driver.execute_script(script))


def prices(cards: list[dict[str, str]]) -> list[Decimal]:
    return [Decimal(card["price"].lstrip("$")) for card in cards]


def test_a_shopper_searches_filters_sorts_pages_uses_a_photo_and_sees_similar_products(
    browser: WebDriver, storefront: str, tmp_path: Path
) -> None:
    shopper = Shopper(browser, storefront)
    catalogue = Product.objects.filter(title__in=[spec[3] for spec in SPECS])
    black_jackets = catalogue.filter(color="Black").count()

    # 1. words in the header box
    shopper.open("/")
    box = browser.find_element(By.ID, "mm-box-q")
    box.send_keys("jacket")
    shopper.search_with_box()
    assert urlsplit(browser.current_url).path == "/search/" and shopper.params()["q"] == ["jacket"]
    assert shopper.cards(), "no results for 'jacket'"
    assert browser.find_element(By.ID, "mm-box-q").get_attribute("value") == "jacket"
    shopper.shot("query-jacket")

    # 2. a facet value: the colour Black
    black = browser.find_element(
        By.XPATH, "//section[@data-facet='color']//a[normalize-space(substring-after(., '☐'))='Black']"
    )
    shopper.leaves_page(black.click)
    assert shopper.params()["filter"] == ["color:Black"] and shopper.params()["q"] == ["jacket"]
    filtered = shopper.cards()
    assert len(filtered) == PAGE_SIZE and {card["colour"] for card in filtered} == {"Black"}
    assert f"{black_jackets} results (page 1 of 2)" in browser.find_element(By.TAG_NAME, "main").text
    shopper.shot("facet-black")

    # 3. sort by price, lowest first (the select submits itself)
    shopper.leaves_page(lambda: Select(browser.find_element(By.ID, "mm-sort")).select_by_value("price_asc"))
    assert shopper.params()["sort"] == ["price_asc"] and shopper.params()["filter"] == ["color:Black"]
    first_page = shopper.cards()
    assert {card["colour"] for card in first_page} == {"Black"}
    assert prices(first_page) == sorted(prices(first_page)) and prices(first_page)[0] == Decimal("28.00")
    shopper.shot("sorted-by-price")

    # 4. page 2 continues page 1
    shopper.leaves_page(browser.find_element(By.CSS_SELECTOR, "nav.mm-pages a[rel=next]").click)
    assert shopper.params()["page"] == ["2"] and shopper.params()["sort"] == ["price_asc"]
    second_page = shopper.cards()
    assert len(first_page) + len(second_page) == black_jackets
    assert not {card["title"] for card in first_page} & {card["title"] for card in second_page}
    assert prices(second_page) == sorted(prices(second_page)) and min(prices(second_page)) >= max(prices(first_page))
    assert {card["colour"] for card in second_page} == {"Black"}
    shopper.shot("page-2")

    # 5. a photo through the header box's photo button, from the home page
    shopper.open("/")
    photo = tmp_path / "red-query.jpg"
    photo.write_bytes(photo_bytes("red", size=160))
    browser.find_element(By.CSS_SELECTOR, "form[data-mm-search-box] input[data-mm-file]").send_keys(str(photo))
    shopper.wait.until(ec.visibility_of_element_located((By.CSS_SELECTOR, "[data-mm-preview] img")))
    shopper.shot("photo-chosen")
    shopper.search_with_box()
    token = shopper.params()["photo"][0]
    assert "q" not in shopper.params()
    figure = browser.find_element(By.CSS_SELECTOR, "figure.mm-query-photo")
    assert "Results for your photo" in figure.text
    thumbnail = figure.find_element(By.TAG_NAME, "img")
    assert browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth", thumbnail) > 0
    by_photo = shopper.cards()
    assert by_photo[0]["colour"] == "Red", by_photo
    shopper.shot("photo-results")

    # 6. refine the kept photo with a word: a GET address with both
    box = browser.find_element(By.ID, "mm-box-q")
    box.clear()
    box.send_keys("jacket")
    shopper.search_with_box()
    assert shopper.params()["photo"] == [token] and shopper.params()["q"] == ["jacket"]
    figure = browser.find_element(By.CSS_SELECTOR, "figure.mm-query-photo")
    assert "Results for your photo and “jacket”" in figure.text
    refined = shopper.cards()
    assert refined[0]["title"] == "Delta Jacket" and refined != by_photo, refined  # the red jacket
    shopper.shot("photo-and-jacket")

    # 7. a product page lists similar products
    shopper.leaves_page(browser.find_element(By.CSS_SELECTOR, ".mm-card a.title").click)
    assert urlsplit(browser.current_url).path.startswith("/products/")
    assert browser.find_element(By.TAG_NAME, "h1").text == "Delta Jacket"
    similar = browser.find_elements(By.CSS_SELECTOR, "#similar-products .card .title")
    assert similar and "Delta Jacket" not in [item.text for item in similar]
    shopper.shot("product")
    browser.execute_script("document.getElementById('similar-products').scrollIntoView()")
    shopper.shot("similar-products")

    # 8. words that leave something out, from the dropdown to the results
    shopper.open("/")
    box = browser.find_element(By.ID, "mm-box-q")
    box.send_keys("jacket not black")
    shopper.wait.until(lambda driver: driver.find_elements(By.CSS_SELECTOR, "[role=option]"))
    options = [" ".join(option.text.split()) for option in browser.find_elements(By.CSS_SELECTOR, "[role=option]")]
    products = [text for text in options if "Jacket · " in text]  # a product says its colour
    assert products and not [text for text in products if "Black" in text], options
    shopper.shot("autocomplete-not-black")
    box.send_keys(Keys.ESCAPE)
    shopper.search_with_box()
    assert "Leaving out, as your words ask: “black”" in browser.find_element(By.TAG_NAME, "main").text
    left = shopper.cards()
    assert left and "Black" not in {card["colour"] for card in left}
    shopper.shot("results-not-black")

    # 9. on a phone: the filters come first, folded under their title, and open with a tap
    browser.set_window_size(390, 900)
    shopper.open("/search/?q=jacket&filter=color:Black")
    panel = browser.find_element(By.CSS_SELECTOR, "[data-mm-filters]")
    summary = panel.find_element(By.TAG_NAME, "summary")
    cards = browser.find_element(By.CSS_SELECTOR, ".mm-grid")
    assert panel.get_attribute("open") is None and summary.text.startswith("Filter (1 applied)")
    assert summary.location["y"] < cards.location["y"]  # above the results, not under 24 of them
    summary.click()
    blue = panel.find_element(By.XPATH, ".//section[@data-facet='color']//a[contains(., 'Blue')]")
    assert panel.get_attribute("open") == "true" and blue.is_displayed()
    shopper.shot("phone-filters")
    # the shop's category tree too: folded, the products right under it
    shopper.open("/")
    tree = browser.find_element(By.CSS_SELECTOR, "[data-fold]")
    assert tree.get_attribute("open") is None and not tree.find_element(By.TAG_NAME, "ul").is_displayed()
    assert browser.find_element(By.CSS_SELECTOR, ".card").location["y"] < 1000
    browser.set_window_size(1280, 1000)
    shopper.open("/")  # on a wide screen it stands open beside them
    assert browser.find_element(By.CSS_SELECTOR, "[data-fold] ul").is_displayed()

    assert sorted(path.name for path in SCREENSHOTS.glob("*.png")) == [
        f"{n:02d}-{name}.png"
        for n, name in enumerate(
            [
                "query-jacket",
                "facet-black",
                "sorted-by-price",
                "page-2",
                "photo-chosen",
                "photo-results",
                "photo-and-jacket",
                "product",
                "similar-products",
                "autocomplete-not-black",
                "results-not-black",
                "phone-filters",
            ],
            start=1,
        )
    ]
    assert all(os.path.getsize(path) > 10_000 for path in SCREENSHOTS.glob("*.png"))
