// Requests: pending ones with who asks, why and for what window; choose segments and approve
// (with an expiry and a download count) or decline with a reason; past decisions below.
import { api, deviceId, el, say, when } from "./app.js";

const EXPIRIES = [["1d", "1 day"], ["7d", "7 days"], ["30d", "30 days"]];

export async function render(main) {
  main.append(el("h1", {}, "Requests"));
  const device = deviceId();
  if (!device) {
    main.append(el("p", { class: "muted" }, "Pair a doorbell first (Doorbells page)."));
    return;
  }
  const data = await api(`doorbells/${encodeURIComponent(device)}/requests`);
  const pending = data.requests.filter((r) => r.status === "pending");
  const past = data.requests.filter((r) => r.status !== "pending");
  const waiting = el("section", { "aria-labelledby": "pending-title" },
    el("h2", { id: "pending-title" }, `Waiting for your decision (${pending.length})`));
  if (pending.length === 0) waiting.append(el("p", { class: "muted" }, "No request is waiting."));
  for (const r of pending) waiting.append(pendingCard(device, r, main));
  main.append(waiting, pastTable(device, past));
}

function who(r) {
  const d = r.detail;
  if (!d) return `requester ${r.requester_key_id || "unknown"}`;
  return d.organisation ? `${d.name}, ${d.organisation}` : d.name;
}

function details(r) {
  const d = r.detail || {};
  const rows = [
    ["Who asks", d.kind ? `${who(r)} (${d.kind.replace(/_/g, " ")})` : who(r)],
    ["Why", d.request_reason || "–"],
    ["Category", d.category ? d.category.replace(/_/g, " ") : "–"],
    ["Case reference", d.case_reference || "–"],
    ["Legal basis", d.legal_basis || "–"],
    ["Camera", d.camera || "–"],
    ["Window", d.window ? `${when(d.window[0])} to ${when(d.window[1])}` : "–"],
    ["Contact", d.contact || "–"],
    ["Policy", r.policy],
    ["Answer by", when(r.expires)],
  ];
  return el("dl", {}, rows.map(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]));
}

function pendingCard(device, r, main) {
  const id = r.request_id;
  const base = `doorbells/${encodeURIComponent(device)}/requests/${encodeURIComponent(id)}`;
  const card = el("article", { class: "card", "aria-labelledby": `title-${id}` },
    el("h3", { id: `title-${id}` }, `Request ${id} from ${who(r)}`), details(r));
  const result = el("p", { role: "status", id: `result-${id}` });
  const picker = el("div", { id: `segments-${id}` });
  const choose = el("button", { type: "button", class: "secondary", id: `choose-${id}` }, "Choose segments to release");
  choose.addEventListener("click", async () => {
    choose.disabled = true;
    picker.replaceChildren(el("p", { class: "muted" }, "Listing the window's segments…"));
    try {
      const data = await api(`${base}/segments`);
      picker.replaceChildren(approveForm(base, id, data.segments, result, main));
    } catch (error) {
      picker.replaceChildren(el("p", { class: "error" }, error.message));
      choose.disabled = false;
    }
  });
  card.append(el("div", { class: "row" }, choose), picker, declineForm(base, id, result, main), result);
  return card;
}

function approveForm(base, id, segments, result, main) {
  const device = base.split("/")[1];
  if (segments.length === 0) return el("p", { class: "muted" }, "Nothing was recorded in this window.");
  const boxes = segments.map((s, n) => {
    const box = el("input", { type: "checkbox", name: "segment", value: s.segment_id, id: `seg-${id}-${n}` });
    const text = `Camera ${s.camera}, ${when(s.start)}, ${s.duration.toFixed(1)} s (clip ${s.clip_id}, segment ${s.index})`;
    // The picture is decrypted and scaled by the console; its text is in the label already.
    const thumb = el("img", {
      src: `/api/doorbells/${device}/segments/${encodeURIComponent(s.segment_id)}/thumbnail`,
      alt: "", class: "thumb", width: "96", height: "54",
    });
    return el("label", { for: `seg-${id}-${n}`, class: "segment" }, box, thumb, el("span", {}, text));
  });
  const expiry = el("select", { id: `expires-${id}`, name: "expires" },
    EXPIRIES.map(([v, t]) => el("option", { value: v, selected: v === "7d" }, t)));
  const downloads = el("input", { id: `downloads-${id}`, name: "downloads", type: "number", min: "1", max: "100", value: "1", required: true });
  const button = el("button", { type: "submit", id: `approve-${id}` }, "Approve selected segments");
  const form = el("form", { "aria-label": `Approve request ${id}` },
    el("fieldset", {}, el("legend", {}, `Segments in the window (${segments.length})`), boxes),
    el("div", { class: "row" },
      el("p", {}, el("label", { for: `expires-${id}` }, "Link expires after"), expiry),
      el("p", {}, el("label", { for: `downloads-${id}` }, "Downloads allowed"), downloads),
      el("p", {}, button)),
    el("p", { class: "muted" }, "A release cannot be unsent: once downloaded, the requester keeps the video."));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const chosen = boxes.map((l) => l.querySelector("input")).filter((b) => b.checked).map((b) => b.value);
    if (chosen.length === 0) {
      result.textContent = "Choose at least one segment to release.";
      result.className = "error";
      return;
    }
    button.disabled = true;
    result.className = "";
    result.textContent = `Releasing ${chosen.length} segment(s)…`;
    try {
      const release = await api(`${base}/approve`, {
        segments: chosen, expires: expiry.value, max_downloads: Number(downloads.value),
      });
      say(`Release ${release.release_id}: ${release.segment_ids.length} segment(s) until ${when(release.expires)}`);
      await rerender(main);
    } catch (error) {
      result.textContent = error.message;
      result.className = "error";
      button.disabled = false;
    }
  });
  return form;
}

function declineForm(base, id, result, main) {
  const reason = el("input", { id: `reason-${id}`, name: "reason", type: "text", maxlength: "500", required: true });
  const button = el("button", { type: "submit", class: "danger", id: `decline-${id}` }, "Decline");
  const form = el("form", { class: "inline", "aria-label": `Decline request ${id}` },
    el("p", {}, el("label", { for: `reason-${id}` }, "Reason for declining (the requester sees it)"), reason),
    el("p", {}, button));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    button.disabled = true;
    try {
      const answer = await api(`${base}/decline`, { reason: reason.value });
      say(`Request ${answer.request_id} ${answer.status}`);
      await rerender(main);
    } catch (error) {
      result.textContent = error.message;
      result.className = "error";
      button.disabled = false;
    }
  });
  return form;
}

async function rerender(main) {
  main.replaceChildren();
  await render(main);
}

function releaseCell(device, ids) {
  if (ids.length === 0) return "–";
  return ids.map((id) => {
    const note = el("span", { role: "status", id: `revoked-${id}` });
    const button = el("button", { type: "button", class: "secondary", id: `revoke-${id}`, "aria-label": `Revoke release ${id}` }, "Revoke");
    button.addEventListener("click", async () => {
      button.disabled = true;
      try {
        await api(`doorbells/${encodeURIComponent(device)}/releases/${encodeURIComponent(id)}/revoke`, {});
        note.textContent = " revoked: it can no longer be downloaded";
        say(`Release ${id} revoked`);
      } catch (error) {
        note.textContent = ` ${error.message}`;
        note.className = "error";
        button.disabled = false;
      }
    });
    return el("p", {}, `${id} `, button, note);
  });
}

function pastTable(device, past) {
  const section = el("section", { "aria-labelledby": "past-title" }, el("h2", { id: "past-title" }, "Past decisions"));
  if (past.length === 0) {
    section.append(el("p", { class: "muted" }, "None yet."));
    return section;
  }
  section.append(el("table", { id: "past" },
    el("thead", {}, el("tr", {}, ["Request", "Who asked", "Decision", "Why", "Releases"].map((t) => el("th", { scope: "col" }, t)))),
    el("tbody", {}, past.map((r) => el("tr", {},
      el("td", {}, r.request_id), el("td", {}, who(r)), el("td", {}, r.status.replace(/_/g, " ")),
      el("td", {}, r.rule && r.status === "auto_declined" ? `${r.reason || ""} (rule ${r.rule})` : (r.reason || "–")),
      el("td", {}, releaseCell(device, r.release_ids)))))));
  return section;
}
