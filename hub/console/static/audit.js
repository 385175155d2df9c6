// Audit: the doorbell's log verified against the checkpoint this profile accepted last, then
// its entries in plain words, newest first, a page at a time.
import { api, deviceId, el, when } from "./app.js";

let page = 0;

export async function render(main) {
  main.append(el("h1", {}, "Audit log"));
  const device = deviceId();
  if (!device) {
    main.append(el("p", { class: "muted" }, "Pair a doorbell first (Doorbells page)."));
    return;
  }
  const data = await api(`doorbells/${encodeURIComponent(device)}/audit?page=${page}`);
  if (!data.verified) {
    main.append(el("p", { class: "card", id: "verdict", role: "alert" },
      el("span", { class: "pill bad" }, "not verified"), " ", data.problem));
    return;
  }
  main.append(el("p", { class: "card", id: "verdict" },
    el("span", { class: "pill ok" }, "verified"),
    ` ${data.size} entries, consistent with the checkpoint you accepted before (${data.previous_size} entries); every entry below is proven to be in it.`));
  main.append(el("section", { "aria-labelledby": "cosigners-title" },
    el("h2", { id: "cosigners-title" }, "Owners who checked this log"),
    el("ul", {}, data.cosigners.map((c) => el("li", {},
      c.size === null ? `${c.name}: has not checked it yet`
        : `${c.name}: checked ${c.size} entries on ${when(c.time)}`)))));
  const list = el("ol", { class: "entries", "aria-label": "Audit entries, newest first" },
    data.entries.map((e) => el("li", {},
      el("strong", {}, `#${e.index} `), `${e.entry.time}: ${e.text}`, el("br"),
      el("code", {}, JSON.stringify(e.entry)))));
  const older = el("button", { type: "button", class: "secondary", id: "older", disabled: page + 1 >= data.pages }, "Older entries");
  const newer = el("button", { type: "button", class: "secondary", id: "newer", disabled: page === 0 }, "Newer entries");
  const go = (delta) => async () => { page += delta; main.replaceChildren(); await render(main); };
  older.addEventListener("click", go(1));
  newer.addEventListener("click", go(-1));
  main.append(el("section", { "aria-labelledby": "entries-title" },
    el("h2", { id: "entries-title" }, `Entries (page ${data.page + 1} of ${data.pages})`), list,
    el("nav", { class: "row", "aria-label": "Audit pages" }, newer, older)));
}
