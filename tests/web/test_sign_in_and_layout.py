"""Sign-in (dev button, pasted token), where the token lives, and the page at two widths."""

from __future__ import annotations

from urllib.parse import urlsplit

from playwright.async_api import Page, ViewportSize, expect

from tests.web.front_desk import AddPatients, FrontDesk

TOKEN_KEY = "patient-search.token"
TABLET: ViewportSize = {"width": 768, "height": 1024}


async def test_dev_sign_in_mints_a_token_for_the_chosen_clinic(
    page: Page, clinic: str, add_patients: AddPatients
) -> None:
    await add_patients({"first_name": "Ada", "last_name": "Lovelace"})
    await page.goto("/")
    dev_form = page.locator("#dev-form")
    await expect(dev_form).to_be_visible()
    await page.get_by_label("Clinic").select_option(clinic)
    await page.get_by_role("button", name="Sign in to this clinic").click()

    desk = FrontDesk(page)
    await expect(desk.box).to_be_focused()
    await expect(page.locator("#session-clinic")).to_have_text(clinic)
    await desk.search("lovelace")
    await expect(desk.options.first).to_contain_text("Lovelace, Ada")

    token = await page.evaluate(f"() => sessionStorage.getItem('{TOKEN_KEY}')")
    assert token and token.count(".") == 2
    assert token not in page.url and urlsplit(page.url)[2:] == ("/", "", "")
    assert await page.evaluate("() => localStorage.length + document.cookie.length") == 0


async def test_a_pasted_token_signs_in_and_sign_out_forgets_it(page: Page, clinic: str) -> None:
    desk = FrontDesk(page)
    token = await desk.sign_in(clinic)
    await expect(page.locator("#session-clinic")).to_have_text(clinic)
    assert await page.evaluate(f"() => sessionStorage.getItem('{TOKEN_KEY}')") == token

    await page.reload()  # the same tab keeps its session
    await expect(desk.box).to_be_focused()

    await page.get_by_role("button", name="Sign out").click()
    await expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    await expect(desk.box).to_be_hidden()
    assert await page.evaluate("() => sessionStorage.length") == 0


async def test_a_pasted_non_token_is_refused_with_a_reason(page: Page) -> None:
    await page.goto("/")
    await page.get_by_label("Bearer token").fill("not a token")
    await page.get_by_label("Bearer token").press("Enter")
    await expect(page.get_by_role("alert")).to_contain_text("not a patient-search token")
    assert await page.evaluate("() => sessionStorage.length") == 0


async def test_every_control_has_a_label_and_focus_follows_the_work(
    page: Page, clinic: str
) -> None:
    await page.goto("/")
    await expect(page.get_by_label("Bearer token")).to_be_focused()
    desk = FrontDesk(page)
    await desk.sign_in(clinic)
    await expect(desk.box).to_be_focused()
    unlabelled = await page.evaluate(
        """() => [...document.querySelectorAll("input, select, textarea, button")]
            .filter((el) => !el.closest("[hidden]"))
            .filter((el) => !(el.labels && el.labels.length) && !el.getAttribute("aria-label")
                            && !el.textContent.trim())
            .map((el) => el.id || el.outerHTML)"""
    )
    assert unlabelled == []
    await page.keyboard.press("Shift+Tab")
    await expect(page.get_by_role("button", name="Sign out")).to_be_focused()
    await page.keyboard.press("/")  # jumps back to the box from anywhere
    await expect(desk.box).to_be_focused()


# WCAG 2.1 contrast of an element's text against the first opaque background behind it.
CONTRAST = """(selector) => {
  const channel = (c) => {
    c /= 255;
    return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
  };
  const rgb = (text) => text.match(/[\\d.]+/g).map(Number);
  const luminance = ([r, g, b]) => 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b);
  const background = (el) => {
    for (let at = el; at; at = at.parentElement) {
      const color = rgb(getComputedStyle(at).backgroundColor);
      if ((color[3] ?? 1) !== 0) return color;
    }
    return [255, 255, 255];
  };
  return [...document.querySelectorAll(selector)].filter((el) => el.offsetParent).map((el) => {
    const pair = [luminance(rgb(getComputedStyle(el).color)), luminance(background(el))];
    const [light, dark] = pair.sort((a, b) => b - a);
    return [el.textContent.trim().slice(0, 30), (light + 0.05) / (dark + 0.05)];
  });
}"""


async def test_text_meets_wcag_aa_contrast(
    page: Page, clinic: str, add_patients: AddPatients
) -> None:
    await add_patients(
        {"first_name": "Ada", "last_name": "Lovelace", "status": "active"},
        {"first_name": "Adam", "last_name": "Lovelace", "status": "inactive"},
        {"first_name": "Adalind", "last_name": "Lovelace", "status": "deceased"},
    )
    desk = FrontDesk(page)
    await desk.sign_in(clinic)
    await desk.search("ada lovelace")
    await expect(desk.options).to_have_count(3)
    await desk.box.press("ArrowDown")
    await desk.box.press("Enter")
    await expect(desk.panel.get_by_role("region", name="Insurance")).to_be_visible()
    selectors = "h1, h2, h3, label, p, dt, dd, kbd, mark, .tag, .result-name, button, .entries span"
    ratios = await page.evaluate(CONTRAST, selectors)
    assert len(ratios) > 20
    assert [(text, round(ratio, 2)) for text, ratio in ratios if ratio < 4.5] == []


async def test_the_page_fits_a_tablet_and_the_panel_slides_over(
    page: Page, clinic: str, add_patients: AddPatients
) -> None:
    await page.set_viewport_size(TABLET)
    await add_patients(
        {"first_name": "Maximiliana", "last_name": "Vandenberghe-Oppenheimer", "mrn": "LONG-1"}
    )
    desk = FrontDesk(page)
    await desk.sign_in(clinic)
    await desk.search("vandenberghe")
    await expect(desk.options).to_have_count(1)
    assert await page.evaluate("() => document.documentElement.scrollWidth") <= TABLET["width"]

    await desk.box.press("Enter")
    await expect(desk.panel).to_be_visible()
    box = await desk.panel.bounding_box()
    assert box is not None
    assert box["x"] >= 0 and box["x"] + box["width"] <= TABLET["width"]
    assert await page.evaluate("() => document.documentElement.scrollWidth") <= TABLET["width"]
    await page.keyboard.press("Escape")
    await expect(desk.panel).to_be_hidden()


async def test_at_1280_px_results_and_panel_sit_side_by_side(
    page: Page, clinic: str, add_patients: AddPatients
) -> None:
    await add_patients({"first_name": "Ada", "last_name": "Lovelace"})
    desk = FrontDesk(page)
    await desk.sign_in(clinic)
    await desk.search("lovelace")
    await desk.box.press("Enter")
    await expect(desk.panel).to_be_visible()
    results = await desk.results.bounding_box()
    panel = await desk.panel.bounding_box()
    assert results is not None and panel is not None
    assert results["x"] + results["width"] <= panel["x"]
    assert await page.evaluate("() => document.documentElement.scrollWidth") <= 1280
