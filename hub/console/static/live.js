// Live: the doorbell's live view with sound. The console mints a single-use live link (signed
// with this owner's key, as 'doorward owner live-link' does); the doorbell serves the page it
// opens, on its own HTTPS port, in a new tab.
import { api, deviceId, el, when } from "./app.js";

export async function render(main) {
  main.append(el("h1", {}, "Live view"));
  const device = deviceId();
  if (!device) {
    main.append(el("p", { class: "muted" }, "Pair a doorbell first (Doorbells page)."));
    return;
  }
  const base = `doorbells/${encodeURIComponent(device)}`;
  const { cameras } = await api(`${base}/cameras`);
  const camera = el("select", { id: "live-camera", name: "camera" },
    cameras.length ? cameras.map((name) => el("option", { value: name }, name)) : el("option", { value: "" }, "First camera"));
  const open = el("button", { type: "submit", id: "open-live" }, "Get a live link");
  const result = el("div", { id: "live-result", role: "status" });
  const form = el("form", { class: "inline", "aria-label": "Watch live" },
    el("p", {}, el("label", { for: "live-camera" }, "Camera"), camera),
    el("p", {}, open));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    open.disabled = true;
    result.replaceChildren();
    try {
      const link = await api(`${base}/live-link`, { camera: camera.value || null });
      result.replaceChildren(
        el("p", {}, el("a", { href: link.url, target: "_blank", rel: "noopener noreferrer", id: "live-link", class: "button" }, "Open live view (video and sound)")),
        el("p", { class: "muted" }, `The link works once, until ${when(link.expires)}. The doorbell's page asks the browser once to trust its own certificate.`));
      document.getElementById("live-link").focus();
    } catch (error) {
      result.replaceChildren(el("p", { class: "error" }, error.message));
    } finally {
      open.disabled = false;
    }
  });
  main.append(
    el("p", { class: "muted" }, "Live view plays in a page the doorbell serves, on the same network (or a VPN): video and the doorbell's microphone."),
    form, result);
}
