// One customer: edit with If-Match, delete/restore, photo (both upload
// flows) and the history timeline.
import { request } from "./api.js";
import { announce, busy, errorBox, field, h, heading, loadFailed, showProblem, valueOf } from "./ui.js";
import { historyList } from "./history.js";

const EDITABLE = ["name", "surname", "email", "phone", "external_id", "notes"];

export function customerPage(main, id) {
  main.replaceChildren(heading("Customer"), h("p", { class: "loading" }, "Loading…"));
  let preview = null;

  async function show() {
    let customer;
    let version;
    try {
      const answer = await request("GET", `/v1/customers/${id}`);
      customer = answer.data;
      version = answer.version;
    } catch (problem) {
      loadFailed(main, problem, show);
      return;
    }
    const title = heading(`${customer.name} ${customer.surname}`);
    const sections = [
      h("p", {}, h("a", { href: "#/customers" }, "← All customers")),
      title,
      customer.deleted_at ? deletedBanner(customer) : null,
      editForm(customer, version),
      photoSection(customer, version),
      h("section", { "aria-labelledby": "history-h" }, h("h2", { id: "history-h" }, "History"), historyList(id)),
    ];
    main.replaceChildren(...sections.filter(Boolean));
    title.focus();
  }

  function deletedBanner(customer) {
    const restore = h("button", { type: "button", id: "restore-customer" }, "Restore");
    restore.addEventListener("click", async () => {
      try {
        await busy(restore, () => request("POST", `/v1/customers/${customer.id}/restore`));
        announce("Customer restored");
        show();
      } catch (problem) {
        announce(problem.detail);
      }
    });
    return h("div", { class: "banner", role: "note" }, h("p", {}, "This customer is deleted."), restore);
  }

  function editForm(customer, version) {
    const deleted = Boolean(customer.deleted_at);
    const save = h("button", { type: "submit", disabled: deleted }, "Save");
    const remove = h("button", { type: "button", class: "danger", id: "delete-customer", disabled: deleted }, "Delete");
    const form = h("form", { class: "card", id: "edit-customer", novalidate: true, "aria-label": "Edit customer" },
      errorBox(),
      h("div", { class: "grid" },
        field("Name", "name", { required: true, value: customer.name }),
        field("Surname", "surname", { required: true, value: customer.surname }),
        field("Email", "email", { type: "email", value: customer.email }),
        field("Phone", "phone", { type: "tel", value: customer.phone }),
        field("External id", "external_id", { value: customer.external_id })),
      field("Notes", "notes", { textarea: true, value: customer.notes }),
      h("p", { class: "muted small" }, `Version ${version}`),
      h("div", { class: "actions" }, save, remove));
    if (deleted) form.querySelectorAll("input, textarea").forEach((c) => { c.disabled = true; });
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      // Only what changed: a PATCH leaves the other fields alone.
      const body = {};
      for (const name of EDITABLE) {
        const value = valueOf(form, name);
        if (value !== (customer[name] ?? null)) body[name] = value;
      }
      if (Object.keys(body).length === 0) {
        announce("Nothing to save");
        return;
      }
      try {
        await busy(save, () => request("PATCH", `/v1/customers/${customer.id}`, { body, ifMatch: version }));
        announce("Saved");
        show();
      } catch (problem) {
        if (problem.status === 412) {
          const reload = h("button", { type: "button", class: "secondary", id: "reload-customer", onclick: show }, "Reload");
          showProblem(form, {
            detail: "Someone else changed this customer after you opened it, so your changes were not saved. Reload to see the current version, then make your changes again.",
          }, reload);
        } else {
          showProblem(form, problem);
        }
      }
    });
    remove.addEventListener("click", async () => {
      try {
        await busy(remove, () => request("DELETE", `/v1/customers/${customer.id}`, { ifMatch: version }));
        announce("Customer deleted; it can be restored");
        show();
      } catch (problem) {
        showProblem(form, problem);
      }
    });
    return form;
  }

  function photoSection(customer, version) {
    const file = h("input", { type: "file", id: "photo-file", name: "file", accept: "image/jpeg,image/png,image/webp,image/gif", "aria-describedby": "photo-help" });
    const previewImage = h("img", { class: "photo-preview", alt: "Chosen photo (not uploaded yet)", hidden: true });
    const attach = h("button", { type: "button", id: "photo-attach", disabled: true }, "Upload, then attach");
    const forCustomer = h("button", { type: "button", id: "photo-for-customer", class: "secondary", disabled: true }, "Upload for this customer");
    const detach = h("button", { type: "button", class: "secondary", id: "photo-remove" }, "Remove photo");
    const form = h("form", { class: "card", id: "photo-form", "aria-label": "Photo", novalidate: true },
      h("h2", {}, "Photo"),
      errorBox(),
      customer.photo
        ? h("img", { class: "photo", id: "customer-photo", src: customer.photo.url, alt: `Photo of ${customer.name} ${customer.surname}` })
        : h("p", { class: "muted", id: "no-photo" }, "No photo."),
      h("div", { class: "field" }, h("label", { for: "photo-file" }, "Choose an image"), file,
        h("p", { class: "muted small", id: "photo-help" }, "JPEG, PNG, WebP or GIF, up to 5 MiB.")),
      previewImage,
      h("div", { class: "actions" }, attach, forCustomer, customer.photo ? detach : null));
    const disabled = Boolean(customer.deleted_at);
    file.disabled = disabled;
    file.addEventListener("change", () => {
      if (preview) URL.revokeObjectURL(preview);
      preview = file.files[0] ? URL.createObjectURL(file.files[0]) : null;
      previewImage.hidden = !preview;
      if (preview) previewImage.src = preview;
      attach.disabled = forCustomer.disabled = !preview;
    });
    const upload = (withCustomer) => {
      const data = new FormData();
      data.append("file", file.files[0]);
      if (withCustomer) data.append("customer_id", customer.id);
      return request("POST", "/v1/photos", { form: data });
    };
    // Option 1: the reply of the attach already shows the photo.
    attach.addEventListener("click", () => run(attach, async () => {
      const { data } = await upload(false);
      await request("PUT", `/v1/customers/${customer.id}/photo`, { body: { photo_id: data.id }, ifMatch: version });
      announce("Photo uploaded and attached");
    }));
    // Option 2: the server attaches it; the next read carries the upload's
    // consistency token and so waits for the outcome.
    forCustomer.addEventListener("click", () => run(forCustomer, async () => {
      await upload(true);
      announce("Photo uploaded for the customer");
    }));
    detach.addEventListener("click", () => run(detach, async () => {
      await request("DELETE", `/v1/customers/${customer.id}/photo`, { ifMatch: version });
      announce("Photo removed");
    }));
    async function run(button, work) {
      try {
        await busy(button, work);
        show();
      } catch (problem) {
        showProblem(form, problem);
      }
    }
    return form;
  }

  show();
  return () => {
    if (preview) URL.revokeObjectURL(preview);
  };
}
