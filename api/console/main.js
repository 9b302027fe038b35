// Entry point: a hash router over the pages, the header, and the session.
import { currentSession, isAdmin, logout, onSessionChange, refreshMe } from "./api.js";
import { loginPage, signupPage } from "./auth.js";
import { customersPage } from "./customers.js";
import { customerPage } from "./customer.js";
import { usersPage } from "./users.js";
import { operatorPage } from "./operator.js";
import { announce, h, heading } from "./ui.js";

const main = document.getElementById("main");
const nav = document.getElementById("nav");
let cleanup = null;

const PAGES = [
  [/^#\/login$/, "Log in", loginPage, { anonymous: true }],
  [/^#\/signup$/, "Sign up", signupPage, { anonymous: true }],
  [/^#\/customers$/, "Customers", customersPage, {}],
  [/^#\/customers\/([0-9a-f-]{36})$/, "Customer", customerPage, {}],
  [/^#\/users$/, "Users", usersPage, { admin: true }],
  [/^#\/operator$/, "Operator", operatorPage, { admin: true }],
];

function route() {
  if (cleanup) cleanup();
  cleanup = null;
  // A message about the previous page does not belong on the next one.
  document.getElementById("status").textContent = "";
  const hash = location.hash || "#/customers";
  const signedIn = Boolean(currentSession());
  const found = PAGES.find(([pattern]) => pattern.test(hash));
  if (!found) {
    main.replaceChildren(heading("Not found"), h("p", {}, h("a", { href: "#/customers" }, "Go to the customers")));
    return;
  }
  const [pattern, title, page, options] = found;
  if (!options.anonymous && !signedIn) {
    location.replace("#/login");
    return;
  }
  if (options.anonymous && signedIn) {
    location.replace("#/customers");
    return;
  }
  if (options.admin && !isAdmin()) {
    main.replaceChildren(heading(title), h("p", { role: "alert" }, "Only admins can see this page."));
    return;
  }
  document.title = `${title} · CRM console`;
  nav.querySelectorAll("[data-nav]").forEach((link) => {
    if (hash.startsWith(`#/${link.dataset.nav}`)) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  });
  cleanup = page(main, ...hash.match(pattern).slice(1)) || null;
  const first = main.querySelector("h1");
  if (first) first.focus();
}

function showSession(session) {
  nav.hidden = !session;
  nav.querySelectorAll("[data-admin]").forEach((link) => { link.hidden = !isAdmin(); });
  document.getElementById("whoami").textContent = session && session.user
    ? `${session.user.name} (${session.user.role})`
    : "";
}

onSessionChange((session) => {
  showSession(session);
  // Signed out (logout, or a refresh that failed): back to the login page.
  if (!session && !/^#\/(login|signup)$/.test(location.hash)) location.hash = "#/login";
});

document.getElementById("logout").addEventListener("click", async () => {
  try {
    await logout();
  } catch {
    // The local session is gone either way.
  }
  announce("Logged out");
});

window.addEventListener("hashchange", route);

async function start() {
  showSession(currentSession());
  if (currentSession()) {
    // A stored session: read the user again (its role may have changed);
    // an expired access token is refreshed on the way.
    try {
      await refreshMe();
    } catch {
      // Handled by the session listener (login page) or shown by the page.
    }
  }
  route();
}

start();
