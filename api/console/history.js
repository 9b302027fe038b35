// A customer's history timeline: who changed what, when.
import { request } from "./api.js";
import { h, loadFailed, when } from "./ui.js";

const LABELS = {
  CustomerRegistered: "Created",
  CustomerDetailsChanged: "Details changed",
  CustomerPhotoAttached: "Photo attached",
  CustomerPhotoDetached: "Photo removed",
  CustomerDeleted: "Deleted",
  CustomerRestored: "Restored",
};

/** An element that fills itself with the history of customer `id`. */
export function historyList(id) {
  const container = h("div", { id: "history" }, h("p", { class: "loading" }, "Loading history…"));
  async function load() {
    try {
      const [{ data: history }, names] = await Promise.all([
        request("GET", `/v1/customers/${id}/history`),
        userNames(),
      ]);
      container.replaceChildren(h("ol", { class: "timeline" }, history.items.map((event) =>
        h("li", { "data-type": event.type },
          h("p", {}, h("strong", {}, LABELS[event.type] || event.type), " · ",
            h("time", { datetime: event.occurred_at }, when(event.occurred_at)), " · by ",
            names.get(event.user_id) || "an API key or removed user"),
          changeList(event.changes)))));
    } catch (problem) {
      loadFailed(container, problem, load);
    }
  }
  load();
  return container;
}

/** User id → display name for the company's users (first 200). */
async function userNames() {
  try {
    const { data } = await request("GET", "/v1/users?limit=200");
    return new Map(data.items.map((user) => [user.id, [user.name, user.surname].filter(Boolean).join(" ")]));
  } catch {
    return new Map();
  }
}

function changeList(changes) {
  // A first photo "replaced" nothing: not worth a line.
  const entries = Object.entries(changes || {}).filter(([name, change]) => !(name === "replaced" && change === null));
  if (entries.length === 0) return null;
  return h("ul", { class: "changes" }, entries.map(([name, change]) =>
    h("li", {}, h("span", { class: "muted" }, `${name}: `, describe(change)))));
}

function describe(change) {
  if (change === "cleared") return "cleared";
  if (change === null) return "none";
  if (typeof change === "object" && "set" in change) return String(change.set);
  return typeof change === "object" ? JSON.stringify(change) : String(change);
}
