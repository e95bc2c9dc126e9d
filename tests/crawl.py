"""Every page each role reaches, in every state worth checking, visited once per session.

The accessibility test (``tests/test_a11y.py``, axe-core) and the language test
(``tests/test_language.py``, no English on screen) read the same walk: one chromium,
one login per role, on the demo data set (``flask demo seed``), so lists page, details
and edit forms have rows, and the Protokoll has entries.

Pages are not listed by hand: the walk takes every GET route of the app's URL map that
needs no argument (Flask-Admin list and create views, custom pages, the login), and
from each list the first row's details and edit pages. A new view is covered without
touching this file. States besides the plain page:

* a list with every filter added and the filter menu open,
* a create form with its first picker (Select2) open, and after a failed save
  (submitted empty, the browser's own checks switched off so the server answers),
* the login after a wrong password, the error pages 403 and 404,
* the account page after a failed password change.

For each state the walk keeps axe-core's violations (WCAG 2.0/2.1 A and AA) and the
texts a user meets (visible text, the page title, ``title``, ``aria-label``,
``placeholder``, ``alt`` and button values).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from werkzeug.serving import make_server

from kim_admin import demo

from .conftest import app_on, build_image

sync_api = pytest.importorskip("playwright.sync_api")

AXE = Path(__file__).resolve().parent / "axe" / "node_modules" / "axe-core" / "axe.min.js"
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TIMEOUT_MS = 15_000
#: The rule sets the issue asks for: WCAG 2.0 and 2.1, levels A and AA.
AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]

#: Who logs in (demo accounts); ``None`` is the visitor who is not logged in.
ROLES: dict[str, str | None] = {
    "anonym": None,
    "kreis": f"kreis@{demo.DEMO_DOMAIN}",
    "steuerung": f"steuerung@{demo.DEMO_DOMAIN}",
    "kommune": f"arnsberg@{demo.DEMO_DOMAIN}",
}

# Routes that are not pages: machine endpoints, downloads, Flask-Admin's AJAX helpers.
SKIPPED_ENDPOINTS = ("static", "admin.static", "health.", "admin.chart_data")
SKIPPED_SUFFIXES = (".ajax_lookup", ".ajax_update", ".export", ".template")

# The texts a user meets on the page, read in the browser.
TEXTS_JS = """() => {
  const texts = [document.title, document.body.innerText];
  for (const el of document.querySelectorAll(
      "[title], [aria-label], [placeholder], [alt], input[type=submit], input[type=button]")) {
    if (el.closest("[hidden], .d-none")) continue;
    for (const name of ["title", "aria-label", "placeholder", "alt"]) {
      if (el.getAttribute(name)) texts.push(el.getAttribute(name));
    }
    if (el.matches("input[type=submit], input[type=button]")) texts.push(el.value);
  }
  return texts;
}"""

AXE_JS = """async (tags) => {
  const result = await axe.run(document, {runOnly: {type: "tag", values: tags},
                                          resultTypes: ["violations"]});
  return result.violations.map((v) => ({
    id: v.id, impact: v.impact, help: v.help,
    nodes: v.nodes.map((n) => ({target: n.target.join(" "), summary: n.failureSummary}))
  }));
}"""

SETTLED_WIDTH_JS = """() => new Promise((resolve) => {
  const start = performance.now();
  let last = -1, same = 0;
  const tick = () => {
    const width = document.scrollingElement.scrollWidth;
    same = width === last ? same + 1 : 0;
    last = width;
    if (same >= 5 || performance.now() - start > 2000) resolve(width);
    else requestAnimationFrame(tick);
  };
  requestAnimationFrame(tick);
})"""

UNREACHABLE_SCROLLERS_JS = """() => [...document.querySelectorAll("body *")]
  .filter((el) => {
    const overflow = getComputedStyle(el).overflowX;
    return (overflow === "auto" || overflow === "scroll") && el.offsetParent !== null
      && el.scrollWidth > el.clientWidth + 1 && el.tabIndex < 0;
  })
  .map((el) => el.tagName.toLowerCase() + (el.id ? "#" + el.id : "")
    + [...el.classList].map((c) => "." + c).join(""))"""


@dataclass
class State:
    """One page in one state, as one role met it."""

    role: str
    label: str
    url: str
    title: str
    violations: list[dict[str, Any]] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    #: id (or role) of the element that has the focus when the page has loaded.
    focus: str = ""
    #: The page's scroll width in a window 320 CSS pixels wide (WCAG 1.4.10 Reflow:
    #: nothing but a data table in its own scrolling region may be wider); 0 where
    #: not measured (states with an open menu or picker).
    width_320: int = 0
    #: Elements that scroll sideways at 320 CSS pixels but cannot take the keyboard's
    #: focus (a keyboard user could not scroll them; 2.1.1).
    unreachable_320: list[str] = field(default_factory=list)

    def describe_violations(self) -> list[str]:
        """Readable lines: state, rule, impact, help and the first elements it hit."""
        lines = []
        for v in self.violations:
            targets = "; ".join(n["target"] for n in v["nodes"][:4])
            more = f" (+{len(v['nodes']) - 4})" if len(v["nodes"]) > 4 else ""
            lines.append(
                f"[{self.role}] {self.label} {self.url}: {v['id']} ({v['impact']}) "
                f"{v['help']} -> {targets}{more}"
            )
        return lines


@contextmanager
def _served(app: Flask) -> Iterator[str]:
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="crawl-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def page_routes(app: Flask) -> list[tuple[str, str]]:
    """(endpoint, path) of every GET route without arguments that renders a page."""
    routes = []
    for rule in app.url_map.iter_rules():
        if "GET" not in (rule.methods or ()) or rule.arguments:
            continue
        if rule.endpoint.startswith(SKIPPED_ENDPOINTS) or rule.endpoint.endswith(SKIPPED_SUFFIXES):
            continue
        routes.append((rule.endpoint, rule.rule))
    return sorted(routes, key=lambda r: r[1])


class Walker:
    """Visits the states of one role's pages and records each."""

    def __init__(self, page: Any, base: str, role: str) -> None:
        self.page = page
        self.base = base
        self.role = role
        self.states: list[State] = []
        self.seen_errors: set[int] = set()
        #: Uncaught script errors (a broken picker or filter would hide its faults from axe).
        self.script_errors: list[str] = []

    def record(self, label: str) -> None:
        page = self.page
        page.wait_for_load_state("load")
        # Let kim-a11y.js finish what the last change of the page asked for (it names new
        # filter rows and pickers in the next animation frame).
        page.evaluate("() => new Promise((r) => requestAnimationFrame(() => setTimeout(r)))")
        violations = page.evaluate(AXE_JS, AXE_TAGS)
        texts = page.evaluate(TEXTS_JS)
        focus = page.evaluate(
            "() => document.activeElement.id || document.activeElement.getAttribute('role') || ''"
        )
        self.states.append(
            State(self.role, label, page.url, page.title(), violations, texts, focus)
        )

    def measure_reflow(self) -> None:
        """The last recorded state's width at 320 CSS pixels (then back to the desktop)."""
        page = self.page
        desktop = page.viewport_size
        page.set_viewport_size({"width": 320, "height": 640})
        try:
            # Charts redraw for the new width a few frames later (ResizeObserver):
            # the width once it has stayed the same for five frames (at most 2 s).
            self.states[-1].width_320 = page.evaluate(SETTLED_WIDTH_JS)
            self.states[-1].unreachable_320 = page.evaluate(UNREACHABLE_SCROLLERS_JS)
        finally:
            page.set_viewport_size(desktop)

    def goto(self, path: str) -> Any:
        return self.page.goto(path if path.startswith("http") else self.base + path)

    def visit(self, endpoint: str, path: str) -> None:
        response = self.goto(path)
        if response is None:
            return
        if response.status >= 400:
            # Error pages look alike: check each status once per role.
            if response.status not in self.seen_errors:
                self.seen_errors.add(response.status)
                self.record(f"Fehlerseite {response.status}")
            return
        if "text/html" not in response.headers.get("content-type", ""):
            return
        self.record("Seite")
        self.measure_reflow()
        if endpoint.endswith(".index_view"):
            self.list_states()
        elif endpoint.endswith(".create_view"):
            self.form_states()
        elif endpoint == "account.index":
            self.failed_submit()

    def list_states(self) -> None:
        page = self.page
        details = page.locator("a[href*='/details/']").first
        edit = page.locator("a[href*='/edit/']").first
        links = [
            loc.get_attribute("href") for loc in (details, edit) if loc.count() and loc.is_visible()
        ]
        menu = page.locator(".field-filters a.filter")
        toggle = page.locator("[data-toggle=dropdown]:has(+ .field-filters)")
        if menu.count():
            # Add every filter once: each kind of value widget is then on the page.
            for i in range(menu.count()):
                toggle.click()
                menu.nth(i).click()
            self.record("Liste mit allen Filtern")
            toggle.click()
            self.record("Liste mit geöffnetem Filtermenü")
            page.keyboard.press("Escape")
        for href in links:
            self.goto(href)
            kind = "Details" if "/details/" in href else "Bearbeiten"
            self.record(kind)
            self.measure_reflow()
            if kind == "Bearbeiten":
                self.open_picker()

    def open_picker(self) -> None:
        picker = self.page.locator(".select2-container:not(.select2-container-disabled)")
        if picker.count() and picker.first.is_visible():
            picker.first.locator(".select2-choice, .select2-choices").first.click()
            self.record("Formular mit geöffneter Auswahlliste")
            self.page.keyboard.press("Escape")

    def form_states(self) -> None:
        self.open_picker()
        self.failed_submit()

    def failed_submit(self) -> None:
        """Submit the main form with the browser's checks off: the server's errors show."""
        page = self.page
        form = page.locator("main form[method=POST], main form[method=post]").first
        if not form.count():
            return
        page.evaluate(
            """() => {
              const form = document.querySelector("main form[method=POST], main form[method=post]");
              form.noValidate = true;
              for (const el of form.querySelectorAll("input:not([type=hidden]), textarea")) {
                if (el.type !== "checkbox" && el.type !== "submit") el.value = "";
              }
            }"""
        )
        with page.expect_navigation():
            form.locator("[type=submit]").first.click()
        self.record("nach fehlgeschlagenem Speichern")


def login(walker: Walker, email: str) -> None:
    page = walker.page
    walker.goto("/login")
    page.fill("#email", email)
    page.fill("#password", demo.DEMO_PASSWORD)
    with page.expect_navigation():
        page.click("#submit")


def walk_anonymous(walker: Walker, app: Flask) -> None:
    """The login (plain and after a wrong password), the 404 page, the public pages."""
    page = walker.page
    public = set()
    for _endpoint, path in page_routes(app):
        response = walker.goto(path)
        final = page.url.split("?")[0]
        if response is not None and response.ok and "/login" not in final and final not in public:
            public.add(final)
            walker.record("öffentliche Seite")
            walker.measure_reflow()
    walker.goto("/login")
    walker.record("Anmeldung")
    walker.measure_reflow()
    page.fill("#email", "niemand@example.org")
    page.fill("#password", "falsch-falsch-falsch")
    with page.expect_navigation():
        page.click("#submit")
    walker.record("Anmeldung nach falschem Passwort")
    walker.measure_reflow()
    walker.goto("/gibt-es-nicht/")
    walker.record("Fehlerseite 404")


def walk_role(walker: Walker, app: Flask, email: str) -> None:
    login(walker, email)
    for endpoint, path in page_routes(app):
        if endpoint == "auth.login":
            continue
        walker.visit(endpoint, path)


def _walk(database: Any, reference_image: Any, workdir: Path) -> dict[str, list[State]]:
    def seed(app: Flask) -> None:
        demo.seed()

    image = build_image(database, reference_image, "a11y-demo", seed, workdir / "build")
    results: dict[str, list[State]] = {}
    with (
        app_on(database, image, workdir / "app") as app,
        _served(app) as base,
        sync_api.sync_playwright() as playwright,
    ):
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            for role, email in ROLES.items():
                context = browser.new_context(
                    locale="de-DE", viewport={"width": 1280, "height": 900}
                )
                context.set_default_timeout(TIMEOUT_MS)
                context.add_init_script(path=str(AXE))
                try:
                    walker = Walker(context.new_page(), base, role)
                    walker.page.on(
                        "pageerror",
                        lambda error, w=walker: w.script_errors.append(f"{w.page.url}: {error}"),
                    )
                    if email is None:
                        walk_anonymous(walker, app)
                    else:
                        walk_role(walker, app, email)
                    results[role] = walker.states
                    SCRIPT_ERRORS[role] = walker.script_errors
                finally:
                    context.close()
        finally:
            browser.close()
    return results


def walk(
    database: Any, reference_image: Any, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, list[State]]:
    """The states of every role's pages (walked once per test session)."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is not installed")
    if not AXE.exists():
        pytest.fail(f"{AXE} is missing: run `npm ci --prefix tests/axe`")
    workdir = tmp_path_factory.getbasetemp() / "crawl"
    for sub in ("build", "app"):
        (workdir / sub).mkdir(parents=True, exist_ok=True)
    if id(database) not in _WALKS:
        _WALKS[id(database)] = _walk(database, reference_image, workdir)
        # For humans: every state with its violations and texts (the folder is git-ignored).
        ARTIFACTS.mkdir(exist_ok=True)
        (ARTIFACTS / "crawl.json").write_text(
            json.dumps(
                {
                    role: [asdict(s) for s in states]
                    for role, states in _WALKS[id(database)].items()
                },
                ensure_ascii=False,
                indent=1,
            )
        )
    return _WALKS[id(database)]


#: Uncaught script errors of the walk, by role.
SCRIPT_ERRORS: dict[str, list[str]] = {}

# The walk of this test session, by the session's database (both tests read it).
_WALKS: dict[int, dict[str, list[State]]] = {}
