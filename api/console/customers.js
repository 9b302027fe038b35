// The customers list: search, sort, deleted ones, infinite scroll by
// cursor, and the create form.
import { request } from "./api.js";
import { announce, busy, errorBox, field, h, heading, loadFailed, showProblem, valueOf, when } from "./ui.js";

const SORTS = [
  ["-created_at", "Newest first"],
  ["created_at", "Oldest first"],
  ["surname", "Surname A–Z"],
  ["-surname", "Surname Z–A"],
];

export function customersPage(main) {
  const state = { q: "", sort: "-created_at", deleted: false, cursor: null, loading: false, generation: 0 };
  const search = h("input", { type: "search", id: "customer-search", name: "q", autocomplete: "off" });
  const sort = h("select", { id: "customer-sort", name: "sort" },
    SORTS.map(([value, text]) => h("option", { value }, text)));
  const deleted = h("input", { type: "checkbox", id: "customer-deleted", name: "deleted" });
  const list = h("ul", { class: "cards", id: "customer-list", "aria-label": "Customers" });
  const more = h("button", { type: "button", class: "secondary", id: "load-more" }, "Load more");
  const footer = h("div", { class: "list-footer", "aria-live": "polite" });
  const newButton = h("button", { type: "button", id: "new-customer", "aria-expanded": "false" }, "New customer");
  const createSlot = h("div");

  async function load(reset) {
    if (state.loading && !reset) return;
    const generation = reset ? ++state.generation : state.generation;
    if (reset) state.cursor = null;
    state.loading = true;
    footer.replaceChildren(h("p", { class: "loading" }, "Loading…"));
    const params = new URLSearchParams({ sort: state.sort, limit: "25" });
    if (state.q) params.set("q", state.q);
    if (state.deleted) params.set("deleted", "only");
    if (state.cursor) params.set("cursor", state.cursor);
    let loaded = false;
    try {
      const { data } = await request("GET", `/v1/customers?${params}`);
      // A newer search started meanwhile: this answer is for an old query.
      if (generation !== state.generation) return;
      if (reset) list.replaceChildren();
      data.items.forEach((customer) => list.append(row(customer)));
      state.cursor = data.next_cursor;
      showFooter();
      loaded = true;
    } catch (problem) {
      if (generation === state.generation) loadFailed(footer, problem, () => load(reset));
    } finally {
      if (generation === state.generation) state.loading = false;
    }
    // The observer reports changes only: an end that stayed in view while
    // this page loaded, or left and came back within one frame, gives none.
    // Observing anew reports where the end is now.
    if (loaded && state.cursor) {
      observer.unobserve(footer);
      observer.observe(footer);
    }
  }

  function showFooter() {
    if (list.children.length === 0) {
      const none = state.deleted ? "No deleted customers." : "No customers yet.";
      footer.replaceChildren(h("p", { class: "empty" }, state.q ? `No customer matches “${state.q}”.` : none));
    } else if (state.cursor) {
      footer.replaceChildren(more);
    } else {
      footer.replaceChildren(h("p", { class: "muted" }, `${list.children.length} shown, end of list.`));
    }
  }

  function row(customer) {
    const name = `${customer.name} ${customer.surname}`;
    const restore = state.deleted
      ? h("button", { type: "button", class: "secondary", "aria-label": `Restore ${name}` }, "Restore")
      : null;
    const item = h("li", { class: "card customer", "data-id": customer.id },
      customer.photo ? h("img", { src: customer.photo.url, alt: "", class: "thumb" }) : h("span", { class: "thumb none", "aria-hidden": "true" }, initials(customer)),
      h("div", { class: "grow" },
        h("a", { href: `#/customers/${customer.id}`, class: "name" }, name),
        h("p", { class: "muted" }, [customer.email, customer.phone].filter(Boolean).join(" · ") || "No contact details"),
        h("p", { class: "muted small" }, customer.deleted_at ? `Deleted ${when(customer.deleted_at)}` : `Added ${when(customer.created_at)}`)),
      restore);
    if (restore) {
      restore.addEventListener("click", async () => {
        try {
          await busy(restore, () => request("POST", `/v1/customers/${customer.id}/restore`));
          item.remove();
          showFooter();
          announce(`${name} restored`);
        } catch (problem) {
          announce(problem.detail);
        }
      });
    }
    return item;
  }

  let timer;
  search.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(() => {
      state.q = search.value.trim();
      load(true);
    }, 250);
  });
  sort.addEventListener("change", () => {
    state.sort = sort.value;
    load(true);
  });
  deleted.addEventListener("change", () => {
    state.deleted = deleted.checked;
    load(true);
  });
  more.addEventListener("click", () => load(false));
  newButton.addEventListener("click", () => {
    if (createSlot.firstChild) {
      closeCreate();
    } else {
      createSlot.replaceChildren(createForm(closeCreate, () => load(true)));
      newButton.setAttribute("aria-expanded", "true");
      createSlot.querySelector("input").focus();
    }
  });
  function closeCreate() {
    createSlot.replaceChildren();
    newButton.setAttribute("aria-expanded", "false");
    newButton.focus();
  }

  // Infinite scroll: the next page loads when the end of the list comes
  // into view; the button does the same for keyboards.
  const observer = new IntersectionObserver((entries) => {
    if (entries.some((entry) => entry.isIntersecting) && state.cursor && !state.loading) load(false);
  });
  observer.observe(footer);

  main.replaceChildren(
    h("div", { class: "page-head" }, heading("Customers"), newButton),
    createSlot,
    h("div", { class: "toolbar", role: "search" },
      h("div", { class: "field" }, h("label", { for: "customer-search" }, "Search"), search),
      h("div", { class: "field" }, h("label", { for: "customer-sort" }, "Sort"), sort),
      h("div", { class: "check" }, deleted, h("label", { for: "customer-deleted" }, "Show deleted"))),
    list,
    footer);
  load(true);
  return () => {
    observer.disconnect();
    clearTimeout(timer);
  };
}

function initials(customer) {
  return `${customer.name[0] || ""}${customer.surname[0] || ""}`.toUpperCase();
}

function createForm(close, created) {
  const submit = h("button", { type: "submit" }, "Create");
  const form = h("form", { class: "card", id: "create-customer", novalidate: true, "aria-label": "New customer" },
    errorBox(),
    h("div", { class: "grid" },
      field("Name", "name", { required: true }),
      field("Surname", "surname", { required: true }),
      field("Email", "email", { type: "email" }),
      field("Phone", "phone", { type: "tel" }),
      field("External id", "external_id")),
    field("Notes", "notes", { textarea: true }),
    h("div", { class: "actions" }, submit, h("button", { type: "button", class: "secondary", onclick: close }, "Cancel")));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const body = { name: valueOf(form, "name") || "", surname: valueOf(form, "surname") || "" };
    for (const name of ["email", "phone", "external_id", "notes"]) {
      const value = valueOf(form, name);
      if (value !== null) body[name] = value;
    }
    try {
      const { data } = await busy(submit, () => request("POST", "/v1/customers", { body }));
      announce(`${data.name} ${data.surname} created`);
      close();
      // The list read carries the create's consistency token: it waits
      // until the new customer is in the read model.
      created();
    } catch (problem) {
      showProblem(form, problem);
    }
  });
  return form;
}
