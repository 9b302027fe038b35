// Users and their roles (admins only: the server answers 403 otherwise).
import { currentSession, request } from "./api.js";
import { announce, busy, errorBox, field, h, heading, loadFailed, showProblem, valueOf, when } from "./ui.js";

const ROLES = [["user", "User"], ["admin", "Admin"]];

export function usersPage(main) {
  const list = h("ul", { class: "cards", id: "user-list", "aria-label": "Users" }, h("li", { class: "loading" }, "Loading…"));
  const addButton = h("button", { type: "button", id: "new-user", "aria-expanded": "false" }, "Add user");
  const addSlot = h("div");

  async function load() {
    try {
      // The company's users (up to 200 on this page).
      const { data } = await request("GET", "/v1/users?limit=200");
      list.replaceChildren(...data.items.map(row));
    } catch (problem) {
      loadFailed(list, problem, load);
    }
  }

  function row(user) {
    const fullName = [user.name, user.surname].filter(Boolean).join(" ");
    const self = currentSession().user && currentSession().user.id === user.id;
    const roleField = field(`Role of ${fullName}`, "role", { choices: ROLES, value: user.role });
    const save = h("button", { type: "submit", class: "secondary" }, "Change role");
    const form = h("form", { class: "inline", novalidate: true, "aria-label": `Role of ${fullName}` },
      errorBox(), roleField, save);
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const role = form.elements.role.value;
      if (role === user.role) {
        announce(`${fullName} is already ${role}`);
        return;
      }
      try {
        const { data } = await busy(save, () =>
          request("PUT", `/v1/users/${user.id}/role`, { body: { role }, ifMatch: user.version }));
        announce(`${fullName} is now ${data.role}`);
        item.replaceWith(row(data));
      } catch (problem) {
        showProblem(form, problem);
      }
    });
    const item = h("li", { class: "card user", "data-id": user.id },
      h("div", { class: "grow" },
        h("p", { class: "name" }, fullName, self ? " (you)" : ""),
        h("p", { class: "muted" }, user.email, user.title ? ` · ${user.title}` : ""),
        h("p", { class: "muted small" }, `Role: `, h("span", { class: "role" }, user.role), ` · since ${when(user.created_at)}`)),
      form);
    return item;
  }

  addButton.addEventListener("click", () => {
    if (addSlot.firstChild) {
      closeAdd();
      return;
    }
    addSlot.replaceChildren(addForm());
    addButton.setAttribute("aria-expanded", "true");
    addSlot.querySelector("input").focus();
  });
  function closeAdd() {
    addSlot.replaceChildren();
    addButton.setAttribute("aria-expanded", "false");
    addButton.focus();
  }

  function addForm() {
    const submit = h("button", { type: "submit" }, "Add");
    const form = h("form", { class: "card", id: "create-user", novalidate: true, "aria-label": "Add user" },
      errorBox(),
      h("div", { class: "grid" },
        field("Name", "name", { required: true }),
        field("Surname", "surname"),
        field("Email", "email", { type: "email", required: true }),
        field("Initial password", "password", { type: "password", required: true, autocomplete: "new-password" }),
        field("Role", "role", { choices: ROLES, value: "user" })),
      h("div", { class: "actions" }, submit, h("button", { type: "button", class: "secondary", onclick: closeAdd }, "Cancel")));
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const body = {
        name: valueOf(form, "name") || "",
        email: valueOf(form, "email") || "",
        password: form.elements.password.value,
        role: form.elements.role.value,
      };
      const surname = valueOf(form, "surname");
      if (surname) body.surname = surname;
      try {
        const { data } = await busy(submit, () => request("POST", "/v1/users", { body }));
        announce(`${data.name} added`);
        closeAdd();
        load();
      } catch (problem) {
        showProblem(form, problem);
      }
    });
    return form;
  }

  main.replaceChildren(h("div", { class: "page-head" }, heading("Users"), addButton), addSlot, list);
  load();
}
