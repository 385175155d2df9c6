// The console's shell: a fetch helper for /api/, a tiny element builder (text only, never
// HTML), the doorbell picker and a hash router that renders one page at a time.
import * as doorbells from "./doorbells.js";
import * as clips from "./clips.js";
import * as requests from "./requests.js";
import * as audit from "./audit.js";
import * as alerts from "./alerts.js";
import * as live from "./live.js";
import * as owners from "./owners.js";

const PAGES = { doorbells, live, clips, requests, alerts, owners, audit };
const main = document.getElementById("main");
const picker = document.getElementById("device");
const status = document.getElementById("status");

export class ApiError extends Error {}

// Calls /api/PATH; a JSON body makes it a POST. Errors carry the console's message.
export async function api(path, body) {
  const options = { credentials: "same-origin", headers: {} };
  if (body !== undefined) {
    options.method = "POST";
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  const response = await fetch(`/api/${path}`, options);
  let data = null;
  try { data = await response.json(); } catch { data = null; }
  if (!response.ok) {
    const message = data && data.error ? data.error.message : `${response.status} ${response.statusText}`;
    throw new ApiError(message);
  }
  return data;
}

// el("p", {class: "x"}, "text", child): an element whose text is set as text, never as HTML.
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === false || value === null || value === undefined) continue;
    if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (value === true) node.setAttribute(name, "");
    else node.setAttribute(name, String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export function say(text) { status.textContent = text; }

export function when(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  return new Date(seconds * 1000).toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC");
}

export function deviceId() { return picker.value || null; }

let listening = null; // the doorbells the alert stream follows

export async function refreshDevices() {
  const profile = await api("profile");
  const ids = profile.devices.join(",");
  if (ids !== listening) {
    listening = ids;
    alerts.listen();
  }
  const chosen = picker.value;
  picker.replaceChildren(...profile.devices.map((id) => el("option", { value: id }, id)));
  if (profile.devices.includes(chosen)) picker.value = chosen;
  picker.disabled = profile.devices.length === 0;
  return profile;
}

async function show() {
  const name = (location.hash || "#doorbells").slice(1);
  const page = PAGES[name] || doorbells;
  for (const key of Object.keys(PAGES)) {
    const link = document.getElementById(`nav-${key}`);
    if (PAGES[key] === page) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  main.setAttribute("aria-busy", "true");
  main.replaceChildren();
  say("");
  try {
    await page.render(main);
  } catch (error) {
    main.append(el("p", { class: "error", role: "alert" }, error.message));
  } finally {
    main.setAttribute("aria-busy", "false");
    document.body.dataset.page = name;
  }
}

picker.addEventListener("change", show);
window.addEventListener("hashchange", show);
refreshDevices().then(show, (error) => {
  main.append(el("p", { class: "error", role: "alert" }, error.message));
  main.setAttribute("aria-busy", "false");
});
