// Alerts: presses, motion and new requests from every paired doorbell while the console is
// open. The console passes on each doorbell's event stream as Server-Sent Events; each alert
// goes into the list here and, if the owner allowed it, becomes a browser notification.
import { el, when } from "./app.js";

const MAX_KEPT = 100;
const kept = [];
let source = null;
let shown = null; // the list element while the Alerts page is open

// Opens (or reopens, after the paired doorbells changed) the alert stream.
export function listen() {
  if (source) source.close();
  const opened = new EventSource("/api/alerts");
  source = opened;
  // A refused stream (every place taken for now) is not retried by the browser: try again later.
  opened.addEventListener("error", () => {
    if (opened.readyState === EventSource.CLOSED && source === opened) setTimeout(() => { if (source === opened) listen(); }, 10000);
  });
  opened.addEventListener("message", (message) => {
    let alert;
    try { alert = JSON.parse(message.data); } catch { return; }
    kept.unshift(alert);
    kept.length = Math.min(kept.length, MAX_KEPT);
    if (shown && shown.isConnected) {
      alert.seen = true;
      shown.prepend(item(alert));
      document.getElementById("no-alerts")?.remove();
    }
    badge();
    notify(alert);
  });
}

function notify(alert) {
  if (alert.kind === "problem" || !("Notification" in window)) return;
  if (Notification.permission !== "granted") return;
  // Motion can be frequent: one notification per doorbell replaces the last (tag).
  const options = { body: alert.body, tag: `${alert.device_id}-${alert.kind}` };
  new Notification(alert.title, options);
}

function badge() {
  const link = document.getElementById("nav-alerts");
  const unseen = kept.filter((a) => !a.seen).length;
  link.textContent = unseen ? `Alerts (${unseen})` : "Alerts";
}

function item(alert) {
  const cls = alert.kind === "problem" ? "warn" : alert.kind === "doorbell.pressed" ? "bad" : "ok";
  return el("li", { class: "card alert" },
    el("h2", {}, el("span", { class: `pill ${cls}` }, alert.kind), " ", alert.title),
    el("p", {}, alert.body),
    el("p", { class: "muted" }, `${when(alert.time)}, doorbell ${alert.device_id}`));
}

export async function render(main) {
  main.append(el("h1", {}, "Alerts"));
  const permission = "Notification" in window ? Notification.permission : "unsupported";
  const state = el("p", { id: "notify-state" }, {
    granted: "Browser notifications are on.",
    denied: "Browser notifications are blocked for this page (allow them in the browser's site settings).",
    default: "Browser notifications are off.",
    unsupported: "This browser cannot show notifications; alerts appear here only.",
  }[permission]);
  main.append(state);
  if (permission === "default") {
    const allow = el("button", { type: "button", id: "allow-notifications" }, "Allow notifications");
    allow.addEventListener("click", async () => {
      await Notification.requestPermission();
      main.replaceChildren();
      await render(main);
    });
    main.append(allow);
  }
  main.append(el("p", { class: "muted" }, "Presses, motion and new requests from every paired doorbell, newest first, while the console is open."));
  shown = el("ol", { class: "alerts", id: "alert-list", "aria-label": "Alerts, newest first", "aria-live": "polite" });
  shown.append(...kept.map(item));
  for (const alert of kept) alert.seen = true;
  badge();
  main.append(shown);
  if (kept.length === 0) main.append(el("p", { class: "muted", id: "no-alerts" }, "Nothing yet."));
}
