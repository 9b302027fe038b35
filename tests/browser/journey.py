"""The console's journeys in a real headless Chromium, against a running
`crm serve`: python3 journey.py BASE_URL ARTIFACTS_DIR. Each step checks
what the page shows, and keeps a screenshot."""

import os
import sys
import time
import uuid

from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import Select

from harness import Browser, api, png

PASSWORD = "correct horse battery"
# 27 more customers, created through the API, so the list has a second page.
MORE_PEOPLE = [
    ("Marie", "Curie"), ("Emmy", "Noether"), ("Rosalind", "Franklin"), ("Lise", "Meitner"),
    ("Charles", "Darwin"), ("Isaac", "Newton"), ("Michael", "Faraday"), ("James", "Maxwell"),
    ("Niels", "Bohr"), ("Max", "Planck"), ("Johannes", "Kepler"), ("Galileo", "Galilei"),
    ("Louis", "Pasteur"), ("Gregor", "Mendel"), ("Leonhard", "Euler"), ("Carl", "Gauss"),
    ("Bernhard", "Riemann"), ("David", "Hilbert"), ("Srinivasa", "Ramanujan"), ("Claude", "Shannon"),
    ("Edsger", "Dijkstra"), ("Donald", "Knuth"), ("Margaret", "Hamilton"), ("Barbara", "Liskov"),
    ("Adele", "Goldberg"), ("Katherine", "Johnson"), ("Dorothy", "Vaughan"),
]


def step(name):
    print(f"journey: {name}", flush=True)


def main(base, artifacts):
    os.makedirs(artifacts, exist_ok=True)
    b = Browser(base, artifacts)
    try:
        run(b, base, artifacts)
        errors = b.console_errors()
        assert not errors, f"the page logged errors: {errors}"
    finally:
        b.quit()
    print(f"journey: passed; screenshots in {artifacts}", flush=True)


def run(b, base, artifacts):
    suffix = uuid.uuid4().hex[:8]
    email = f"ada-{suffix}@example.com"

    step("/ redirects to the console, which asks to log in")
    b.open("/")
    b.heading("Log in")
    assert b.driver.current_url.startswith(base + "/app"), b.driver.current_url
    status, headers, _ = api(base, "GET", "/app")
    assert status == 200 and "script-src 'self'" in headers["content-security-policy"], headers
    b.shot("login")

    step("sign up: a short password is refused next to its field, then it works")
    b.click("a[href='#/signup']")
    b.heading("Sign up")
    b.fill("main form", company_name="Analytical Engines", name="Ada", email=email, password="short")
    b.button("Create account").click()
    error = b.wait_text("main form .field-error", "8")
    assert b.find("main form [name=password]").get_attribute("aria-invalid") == "true"
    assert error.get_attribute("id") == b.find("[name=password]").get_attribute("aria-describedby")
    b.shot("signup-error")
    b.fill("main form", password=PASSWORD)
    b.button("Create account").click()
    b.heading("Customers")
    b.wait_text("#whoami", "Ada (admin)")
    b.wait_text(".list-footer", "No customers yet")

    step("create 3 customers; each shows in the list at once (consistency token)")
    people = [("Ada", "Lovelace", "ada.l@example.com"), ("Grace", "Hopper", "grace@example.com"),
              ("Alan", "Turing", "alan@example.com")]
    for name, surname, mail in people:
        b.click("#new-customer")
        b.fill("#create-customer", name=name, surname=surname, email=mail)
        if name == "Grace":
            b.shot("create-customer")
        b.button("Create", "#create-customer").click()
        b.wait_text("#customer-list", f"{name} {surname}")
        b.wait_text("#status", "created")
    assert len(b.all("#customer-list > li")) == 3

    step("a create with a bad email shows the server's message next to the field")
    b.click("#new-customer")
    b.fill("#create-customer", name="Bad", surname="Email", email="not-an-email")
    b.button("Create", "#create-customer").click()
    b.wait_text("#create-customer .field-error", "email")
    b.button("Cancel", "#create-customer").click()
    assert len(b.all("#customer-list > li")) == 3

    step("search and sort")
    search = b.find("#customer-search")
    search.send_keys("hop")
    b.wait(lambda: names(b) == ["Grace Hopper"] or None,
           "the search to list only Grace Hopper")
    b.shot("search")
    search.send_keys(Keys.CONTROL, "a", Keys.DELETE)
    b.wait(lambda: len(b.all("#customer-list > li")) == 3 or None, "the 3 customers again")
    b.choose("#customer-sort", "Surname A–Z")
    b.wait(lambda: names(b) == ["Grace Hopper", "Ada Lovelace", "Alan Turing"] or None,
           lambda: f"surname order (shows {names(b)})")

    step("infinite scroll: the next page arrives by cursor when the end comes into view")
    token = b.token()
    for first, last in MORE_PEOPLE:
        status, headers, _ = api(base, "POST", "/v1/customers", token, {
            "name": first, "surname": last, "email": f"{first.lower()}.{last.lower()}@example.com"})
        assert status == 201, status
    # Read with the last create's consistency token: the read models then
    # hold all of them before the console lists them.
    status, _, _ = api(base, "GET", "/v1/customers?limit=1", token,
                       headers={"X-Consistency-Token": headers["X-Consistency-Token"]})
    assert status == 200, status
    b.choose("#customer-sort", "Newest first")
    b.wait(lambda: len(b.all("#customer-list > li")) == 25 or None, "the first page of 25")
    b.script("document.getElementById('load-more').scrollIntoView()")
    b.wait(lambda: len(b.all("#customer-list > li")) == 30 or None, "the second page")
    b.wait_text(".list-footer", "end of list")
    search.send_keys("grace")
    b.wait(lambda: names(b) == ["Grace Hopper"] or None, "Grace alone")

    step("edit with a conflict: 412 message, reload, then the save works")
    b.driver.find_element(By.LINK_TEXT, "Grace Hopper").click()
    b.heading("Grace Hopper")
    grace = b.driver.current_url.rsplit("/", 1)[1]
    status, _, _ = api(base, "PATCH", f"/v1/customers/{grace}", token, {"phone": "+1 555 0100"})
    assert status == 200, status
    b.fill("#edit-customer", notes="Met at the conference")
    b.button("Save", "#edit-customer").click()
    b.wait_text("#edit-customer .form-error", "Someone else changed this customer")
    b.shot("conflict-412")
    b.click("#reload-customer")
    b.wait(lambda: b.find("#edit-customer [name=phone]").get_attribute("value") == "+1 555 0100" or None,
           "the reloaded form to show the other client's phone")
    b.fill("#edit-customer", notes="Met at the conference")
    b.button("Save", "#edit-customer").click()
    b.wait_text("#status", "Saved")
    b.wait_text("#edit-customer", "Version 3")
    assert b.find("#edit-customer [name=notes]").get_attribute("value") == "Met at the conference"
    assert not b.all("#edit-customer .form-error:not([hidden])")

    step("photo, option 1: upload, then attach; the signed URL loads in <img>")
    b.find("#photo-file").send_keys(png(os.path.join(artifacts, "blue.png"), 96, 96, (31, 95, 168)))
    b.wait(lambda: b.find(".photo-preview").get_attribute("src").startswith("blob:") or None, "the preview")
    b.click("#photo-attach")
    b.wait_text("#status", "attached")
    first = loaded_photo(b)
    assert "signature=" in first, first
    b.shot("photo-attached")

    step("photo, option 2: upload for the customer; the next read waits for the attach")
    b.find("#photo-file").send_keys(png(os.path.join(artifacts, "green.png"), 80, 120, (26, 127, 55)))
    b.click("#photo-for-customer")
    b.wait_text("#status", "uploaded for the customer")
    b.wait(lambda: loaded_photo(b) != first or None, "the second photo to replace the first")
    b.shot("photo-for-customer")

    step("delete, find it among the deleted ones, restore it")
    b.click("#delete-customer")
    b.wait_text(".banner", "This customer is deleted.")
    b.shot("deleted")
    b.click("a[href='#/customers']")
    b.heading("Customers")
    b.find("#customer-search").send_keys("grace")
    b.wait_text(".list-footer", "No customer matches")
    b.click("#customer-deleted")
    b.wait(lambda: names(b) == ["Grace Hopper"] or None, "Grace among the deleted")
    b.button("Restore", "#customer-list").click()
    b.wait_text("#status", "Grace Hopper restored")
    b.wait_text(".list-footer", "No customer matches")
    b.click("#customer-deleted")
    b.wait(lambda: names(b) == ["Grace Hopper"] or None, "Grace back in the list")
    photo = b.find(f"#customer-list li[data-id='{grace}'] img.thumb")
    assert b.script("return arguments[0].naturalWidth", photo) > 0

    step("the README's screenshot: the list, oldest first")
    b.find("#customer-search").send_keys(Keys.CONTROL, "a", Keys.DELETE)
    b.choose("#customer-sort", "Oldest first")
    b.wait(lambda: names(b)[:3] == ["Ada Lovelace", "Grace Hopper", "Alan Turing"] or None,
           lambda: f"the list oldest first (shows {names(b)[:3]})")
    b.script("document.activeElement.blur()")
    b.shot("customers")
    b.driver.save_screenshot(os.path.join(artifacts, "console.png"))

    step("history: who changed what, when")
    b.driver.find_element(By.LINK_TEXT, "Grace Hopper").click()
    b.heading("Grace Hopper")
    kinds = lambda: b.script(  # noqa: E731
        "return [...document.querySelectorAll('#history li[data-type]')].map(e => e.dataset.type)")
    b.wait(lambda: len(kinds()) == 7 or None, lambda: f"7 history entries (shows {kinds()})")
    kinds = kinds()
    assert kinds == ["CustomerRegistered", "CustomerDetailsChanged", "CustomerDetailsChanged",
                     "CustomerPhotoAttached", "CustomerPhotoAttached", "CustomerDeleted",
                     "CustomerRestored"], kinds
    history = b.text_of("#history")
    assert "by Ada" in history and "phone: +1 555 0100" in history and "notes: Met at the conference" in history, history
    b.script("document.getElementById('history').scrollIntoView()")
    b.shot("history")

    step("an admin adds a user and changes its role")
    b.click("a[href='#/users']")
    b.heading("Users")
    b.click("#new-user")
    b.fill("#create-user", name="Charles", surname="Babbage", email=f"charles-{suffix}@example.com",
           password=PASSWORD)
    b.button("Add", "#create-user").click()
    row = b.wait_text("#user-list > li", "Charles Babbage")
    assert row.find_element(By.CSS_SELECTOR, ".role").text == "user"
    Select(row.find_element(By.CSS_SELECTOR, "select")).select_by_visible_text("Admin")
    row.find_element(By.CSS_SELECTOR, "button").click()
    b.wait_text("#status", "Charles Babbage is now admin")
    b.wait(lambda: any("Charles" in li.text and li.find_element(By.CSS_SELECTOR, ".role").text == "admin"
                       for li in b.all("#user-list > li")) or None, "Charles shown as admin")
    b.shot("users")

    step("operator page: readiness, projection lag, parked events")
    b.click("a[href='#/operator']")
    b.heading("Operator")
    b.wait_text("#readiness", "Ready")
    b.wait_text("#lag caption", "Read models")
    b.wait_text("#parked", "Parked events: 0")
    b.shot("operator")

    step("a phone-sized screen: one column, nothing wider than the screen")
    b.driver.set_window_size(390, 844)
    b.click("a[href='#/customers']")
    b.heading("Customers")
    b.wait(lambda: len(b.all("#customer-list > li")) >= 25 or None, "the list")
    overflow = b.script("return document.documentElement.scrollWidth - document.documentElement.clientWidth")
    assert overflow <= 0, f"the page is {overflow}px wider than a phone screen"
    b.shot("phone")
    b.driver.set_window_size(1280, 900)

    step("an expired access token is refreshed once, transparently")
    b.script("const s = JSON.parse(localStorage.getItem('crm.session'));"
             "s.access = 'expired'; localStorage.setItem('crm.session', JSON.stringify(s));")
    b.driver.refresh()
    b.heading("Customers")
    b.wait(lambda: len(b.all("#customer-list > li")) >= 25 or None, "the list after a refresh")
    assert b.token() != "expired"

    step("log out (with an expired access token: refreshed first), log in again")
    b.script("const s = JSON.parse(localStorage.getItem('crm.session'));"
             "s.access = 'expired'; localStorage.setItem('crm.session', JSON.stringify(s));")
    b.click("#logout")
    b.heading("Log in")
    assert b.script("return localStorage.getItem('crm.session')") is None
    b.fill("main form", email=email, password="wrong password")
    b.button("Log in").click()
    b.wait_text("main .form-error", "email or password")
    b.fill("main form", password=PASSWORD)
    b.button("Log in").click()
    b.heading("Customers")
    b.wait_text("#whoami", "Ada (admin)")


def names(b):
    """The names the customer list shows, in order (read in one go: the list re-renders)."""
    return b.script("return [...document.querySelectorAll('#customer-list > li .name')].map(e => e.textContent)")


def loaded_photo(b):
    """The src of the customer's photo once the browser has decoded it."""
    def ready():
        images = b.all("#customer-photo")
        if images and b.script("return arguments[0].complete && arguments[0].naturalWidth > 0", images[0]):
            return images[0].get_attribute("src")
        return None
    return b.wait(ready, "the customer's photo to load")


if __name__ == "__main__":
    started = time.monotonic()
    main(sys.argv[1], sys.argv[2])
    print(f"journey: {time.monotonic() - started:.1f} s", flush=True)
