// Owners and policy: the household's phones (approve a new one to pair, remove one; admins only,
// except removing yourself) and the consent policy as a form, saved as a policy document signed
// with this owner's key.
import { api, deviceId, el, say, when } from "./app.js";

const WORDS = {
  requester_kinds: "Refuse requests from",
  categories: "Refuse requests about",
  legal_bases: "Accept these legal bases",
};

export async function render(main) {
  main.append(el("h1", {}, "Owners and policy"));
  const device = deviceId();
  if (!device) {
    main.append(el("p", { class: "muted" }, "Pair a doorbell first (Doorbells page)."));
    return;
  }
  const base = `doorbells/${encodeURIComponent(device)}`;
  const [household, policy] = await Promise.all([api(`${base}/owners`), api(`${base}/policy`)]);
  const owners = el("section", { "aria-labelledby": "owners-title" });
  const rules = el("section", { "aria-labelledby": "policy-title" });
  main.append(owners, rules);
  showOwners(owners, base, household);
  showPolicy(rules, base, policy);
}

function showOwners(section, base, household) {
  const rows = household.owners.map((o) => {
    const mine = o.key_id === household.me;
    const may = household.admin || mine;
    const remove = el("button", { type: "button", class: "danger", id: `remove-${o.key_id}`,
      disabled: !may, "aria-label": `Remove ${o.name}${mine ? " (this profile)" : ""}` }, "Remove");
    remove.addEventListener("click", async () => {
      const sure = mine ? "Remove this profile as an owner? It will no longer see new clips." : `Remove ${o.name}? New clips will no longer be encrypted to it.`;
      if (!window.confirm(sure)) return;
      remove.disabled = true;
      try {
        showOwners(section, base, await api(`${base}/owners/${encodeURIComponent(o.key_id)}/remove`, {}));
        say(`${o.name} removed`);
      } catch (error) {
        remove.disabled = false;
        say("");
        section.querySelector("#owners-error").textContent = error.message;
      }
    });
    return el("tr", {},
      el("td", {}, o.name, mine ? " (this profile)" : ""),
      el("td", {}, o.admin ? el("span", { class: "pill ok" }, "admin") : "owner"),
      el("td", {}, el("code", {}, o.key_id)),
      el("td", {}, when(o.added)),
      el("td", {}, remove));
  });
  const key = el("input", { id: "phone-key", name: "key_id", autocomplete: "off", size: 48, disabled: !household.admin });
  const approve = el("button", { type: "submit", id: "approve-phone", disabled: !household.admin }, "Let this phone pair");
  const result = el("p", { id: "phone-result", role: "status" });
  const form = el("form", { class: "inline", "aria-label": "Let a new phone pair" },
    el("p", {}, el("label", { for: "phone-key" }, "New phone's key id"), key),
    el("p", {}, approve));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    approve.disabled = true;
    result.className = "";
    try {
      await api(`${base}/owners/approve`, { key_id: key.value });
      result.textContent = `That phone may pair during the next few minutes: run 'doorward owner pair' on it.`;
      key.value = "";
    } catch (error) {
      result.className = "error";
      result.textContent = error.message;
    } finally {
      approve.disabled = false;
    }
  });
  section.replaceChildren(
    el("h2", { id: "owners-title" }, "The household's phones"),
    el("table", {}, el("thead", {}, el("tr", {}, ["Name", "Role", "Key id", "Added", ""].map((h) => el("th", { scope: "col" }, h)))),
      el("tbody", { id: "owner-rows" }, rows)),
    el("p", { class: "error", id: "owners-error", role: "alert" }),
    ...(household.admin ? [] : [el("p", { class: "muted" }, "Only an admin can let a phone pair or remove another owner.")]),
    form, result);
}

function showPolicy(section, base, data) {
  const p = data.policy;
  const c = data.choices;
  const boxes = (name, options, chosen) => el("fieldset", {},
    el("legend", {}, WORDS[name]),
    options.map((option) => el("label", {},
      el("input", { type: "checkbox", name, value: option, checked: chosen.includes(option) }), ` ${option.replaceAll("_", " ")}`)));
  const area = (id, label, values, hint) => el("p", { class: "stack" },
    el("label", { for: id }, label), el("textarea", { id, name: id, rows: 3, cols: 48, "aria-describedby": `${id}-hint` }, values.join("\n")),
    el("span", { class: "muted", id: `${id}-hint` }, hint));
  const number = (id, label, value, min, max) => el("p", { class: "stack" },
    el("label", { for: id }, label), el("input", { id, name: id, type: "number", min, max, value, required: true }));
  const result = el("p", { id: "policy-result", role: "status" });
  const form = el("form", { id: "policy-form", "aria-labelledby": "policy-title" },
    el("p", { class: "muted" }, "A request any rule refuses is declined at once; the rest wait for an owner. Saving signs the policy with this profile's key."),
    boxes("requester_kinds", c.requester_kinds, p.refused_kinds),
    boxes("categories", c.categories, p.refused_categories),
    boxes("legal_bases", c.legal_bases, p.allowed_legal_bases),
    area("keywords", "Refuse requests whose text contains", p.refused_keywords, "One word or phrase a line."),
    el("p", {}, el("label", {}, el("input", { type: "checkbox", id: "require-case", checked: p.require_case_reference }), " Refuse requests without a case reference")),
    el("div", { class: "row" },
      number("max-window", "Longest window (minutes)", Math.round(p.max_window_s / 60), 1, Math.floor(c.max_window_s / 60)),
      number("max-rate", "Requests a requester may make a day", p.max_requests_per_day, 1, 1000)),
    area("blocked-keys", "Always refuse these requester keys", p.blocked_keys, "Key ids, one a line."),
    area("allowed-keys", "Known requesters (skip the kind, category, keyword, case and legal-basis rules)", p.allowed_keys, "Key ids, one a line."),
    el("p", {}, el("button", { type: "submit", id: "save-policy" }, "Sign and save the policy")),
    result);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const ticked = (name) => [...form.querySelectorAll(`input[name=${name}]:checked`)].map((b) => b.value);
    const lines = (id) => form.querySelector(`#${id}`).value.split("\n").map((l) => l.trim()).filter(Boolean);
    const policy = {
      refused_kinds: ticked("requester_kinds"),
      refused_categories: ticked("categories"),
      allowed_legal_bases: ticked("legal_bases"),
      refused_keywords: lines("keywords"),
      require_case_reference: form.querySelector("#require-case").checked,
      max_window_s: Number(form.querySelector("#max-window").value) * 60,
      max_requests_per_day: Number(form.querySelector("#max-rate").value),
      blocked_keys: lines("blocked-keys"),
      allowed_keys: lines("allowed-keys"),
    };
    const save = form.querySelector("#save-policy");
    save.disabled = true;
    result.className = "";
    try {
      const saved = await api(`${base}/policy`, { policy });
      showPolicy(section, base, saved);
      section.querySelector("#policy-result").textContent = "Policy signed and installed.";
      say("Policy saved");
    } catch (error) {
      result.className = "error";
      result.textContent = error.message;
      save.disabled = false;
    }
  });
  section.replaceChildren(el("h2", { id: "policy-title" }, "Policy"), form);
}
