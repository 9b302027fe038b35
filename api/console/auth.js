// Login and signup pages.
import { login, signup } from "./api.js";
import { busy, errorBox, field, h, heading, showProblem, valueOf } from "./ui.js";

export function loginPage(main) {
  const submit = h("button", { type: "submit" }, "Log in");
  const form = h("form", { class: "card narrow", novalidate: true },
    errorBox(),
    field("Email", "email", { type: "email", autocomplete: "username", required: true }),
    field("Password", "password", { type: "password", autocomplete: "current-password", required: true }),
    submit,
    h("p", {}, "No account yet? ", h("a", { href: "#/signup" }, "Sign up")));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      await busy(submit, () => login(valueOf(form, "email") || "", form.elements.password.value));
      location.hash = "#/customers";
    } catch (problem) {
      showProblem(form, problem);
    }
  });
  main.replaceChildren(heading("Log in"), form);
}

export function signupPage(main) {
  const submit = h("button", { type: "submit" }, "Create account");
  const form = h("form", { class: "card narrow", novalidate: true },
    errorBox(),
    field("Company name", "company_name", { required: true, autocomplete: "organization" }),
    field("Your name", "name", { required: true, autocomplete: "name" }),
    field("Email", "email", { type: "email", autocomplete: "username", required: true }),
    field("Password (8 characters or more)", "password", {
      type: "password", autocomplete: "new-password", required: true, minlength: 8,
    }),
    submit,
    h("p", {}, "Have an account? ", h("a", { href: "#/login" }, "Log in")));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      await busy(submit, () => signup({
        company_name: valueOf(form, "company_name") || "",
        name: valueOf(form, "name") || "",
        email: valueOf(form, "email") || "",
        password: form.elements.password.value,
      }));
      location.hash = "#/customers";
    } catch (problem) {
      showProblem(form, problem);
    }
  });
  main.replaceChildren(heading("Sign up"), form);
}
