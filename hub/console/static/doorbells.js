// Doorbells: the paired ones with their health, the ones on this network, and pairing.
import { api, el, refreshDevices, say } from "./app.js";

export async function render(main) {
  main.append(el("h1", {}, "Doorbells"));
  const paired = el("section", { "aria-labelledby": "paired-title" },
    el("h2", { id: "paired-title" }, "Paired with this profile"));
  const lan = el("section", { "aria-labelledby": "lan-title" },
    el("h2", { id: "lan-title" }, "On this network"));
  const list = el("div", { id: "paired-list" });
  paired.append(list);
  main.append(paired, pairForm(list), lan);
  lanPart(lan);
  await showPaired(list);
}

async function showPaired(list) {
  const data = await api("doorbells");
  list.replaceChildren(data.doorbells.length === 0
    ? el("p", { class: "muted" }, "No doorbell is paired yet: pair one below.")
    : el("div", { class: "cards" }, data.doorbells.map(card)));
}

function card(d) {
  const h = d.health || {};
  const m = d.metrics || {};
  const rows = [
    ["State", d.online ? el("span", { class: "pill ok" }, "online") : el("span", { class: "pill bad" }, "offline")],
    ["Address", d.url || "through the relay only"],
  ];
  if (d.online) {
    rows.push(["Cameras", (d.cameras || []).map((c) => `${c.name} (${c.width}×${c.height}, ${c.fps} fps)`).join(", ") || "none"]);
    rows.push(["Storage", `${m.stored_bytes ?? 0} bytes stored; ${m.clips ?? 0} clips this run`]);
    rows.push(["Backup", backupText(d.backup || {})]);
    rows.push(["Owners", String(h.owners ?? "?")]);
  } else if (d.error) {
    rows.push(["Problem", d.error]);
  }
  rows.push(["Relay", d.relay_url ? `answers through ${d.relay_url}` : (d.relay_key_pinned ? "key pinned, no relay address" : "not set up")]);
  rows.push(["TLS key", d.fingerprint]);
  return el("article", { class: "card", "aria-label": `Doorbell ${h.name || d.device_id}` },
    el("h3", {}, h.name ? `${h.name} (${d.device_id})` : d.device_id),
    el("dl", {}, rows.map(([k, v]) => [el("dt", {}, k), el("dd", {}, v)])));
}

function backupText(b) {
  if (!b.enabled) return "off";
  const failing = b.last_error_at && (!b.last_success || b.last_error_at > b.last_success);
  return `${failing ? "failing" : "ok"} → ${b.target}; ${b.queued_objects ?? 0} waiting`;
}

function pairForm(list) {
  const result = el("p", { id: "pair-result", role: "status" });
  const input = el("input", {
    id: "setup", name: "setup", type: "text", autocomplete: "off", spellcheck: "false",
    required: true, "aria-describedby": "setup-help",
  });
  const button = el("button", { type: "submit", id: "pair" }, "Pair");
  const form = el("form", { class: "inline", "aria-labelledby": "pair-title" },
    el("p", {}, el("label", { for: "setup" }, "Setup code or setup URI"), input),
    el("p", {}, button));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    button.disabled = true;
    result.className = "";
    result.textContent = "Pairing…";
    try {
      const paired = await api("pair", { setup: input.value });
      input.value = "";
      result.textContent = `Paired with doorbell ${paired.device_id}.` + (paired.relay_note ? ` ${paired.relay_note}` : "");
      say(`Paired with ${paired.device_id}`);
      await refreshDevices();
      await showPaired(list);
    } catch (error) {
      result.textContent = error.message;
      result.className = "error";
    } finally {
      button.disabled = false;
    }
  });
  return el("section", { class: "card", "aria-labelledby": "pair-title" },
    el("h2", { id: "pair-title" }, "Pair a doorbell"),
    el("p", { id: "setup-help", class: "muted" },
      "Type the 8-digit code the doorbell shows (it must be the only doorbell open for pairing on this network), or paste its doorward://pair?… URI."),
    form, result);
}

function lanPart(section) {
  const list = el("div", { id: "lan-list" });
  const button = el("button", { type: "button", class: "secondary", id: "discover" }, "Look for doorbells");
  button.addEventListener("click", async () => {
    button.disabled = true;
    list.replaceChildren(el("p", { class: "muted" }, "Listening for a few seconds…"));
    try {
      const found = await api("discover");
      list.replaceChildren(found.devices.length === 0
        ? el("p", { class: "muted" }, "No Doorward doorbell answered on this network.")
        : el("table", {},
          el("thead", {}, el("tr", {}, ["Doorbell", "Address", "Pairing", "Here"].map((t) => el("th", { scope: "col" }, t)))),
          el("tbody", {}, found.devices.map((d) => el("tr", {},
            el("td", {}, `${d.name} (${d.device_id})`), el("td", {}, d.address),
            el("td", {}, d.pairing === "open" ? "open for pairing" : "closed"),
            el("td", {}, d.paired_here ? "paired" : "not paired"))))));
    } catch (error) {
      list.replaceChildren(el("p", { class: "error" }, error.message));
    } finally {
      button.disabled = false;
    }
  });
  section.append(button, list);
}
