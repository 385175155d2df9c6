// Clips: the doorbell's recordings, filtered by camera and day, each with its first picture
// (decrypted and scaled by the console), a player and an MP4 download. The player's video is a
// fragmented MP4 the console decrypts and remuxes; the browser fetches it by range as it seeks.
import { api, deviceId, el, when } from "./app.js";

const filters = { camera: "", day: "" };

export async function render(main) {
  main.append(el("h1", {}, "Clips"));
  const device = deviceId();
  if (!device) {
    main.append(el("p", { class: "muted" }, "Pair a doorbell first (Doorbells page)."));
    return;
  }
  const base = `doorbells/${encodeURIComponent(device)}`;
  const first = await api(`${base}/clips?${query()}`);
  const camera = el("select", { id: "clip-camera", name: "camera" },
    el("option", { value: "" }, "All cameras"),
    first.cameras.map((name) => el("option", { value: name, selected: name === filters.camera }, name)));
  const day = el("input", { id: "clip-day", name: "day", type: "date", value: filters.day });
  const form = el("form", { class: "inline", "aria-label": "Filter clips" },
    el("p", {}, el("label", { for: "clip-camera" }, "Camera"), camera),
    el("p", {}, el("label", { for: "clip-day" }, "Day (UTC)"), day),
    el("p", {}, el("button", { type: "submit", id: "filter" }, "Show")));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    filters.camera = camera.value;
    filters.day = day.value;
    main.replaceChildren();
    await render(main);
  });
  const player = el("section", { class: "card player", id: "player", hidden: true, "aria-labelledby": "player-title" });
  const list = el("ol", { class: "clips", id: "clip-list", "aria-label": "Clips, oldest first" });
  list.addEventListener("click", (event) => {
    const button = event.target.closest("button.play");
    if (button) play(player, base, button.dataset.clip, button.dataset.title);
  });
  main.append(form, player, list);
  let page = first;
  const more = el("button", { type: "button", class: "secondary", id: "more-clips" }, "More clips");
  more.addEventListener("click", async () => {
    more.disabled = true;
    page = await api(`${base}/clips?${query(page.next)}`);
    show();
  });
  const show = () => {
    list.append(...page.clips.map((c) => item(base, c)));
    more.hidden = !page.next;
    more.disabled = false;
  };
  if (first.clips.length === 0) main.append(el("p", { class: "muted" }, "No clip matches."));
  main.append(more);
  show();
}

// Plays a clip in the page: the <video> asks the console for the remuxed clip by range.
function play(player, base, clipId, title) {
  const video = el("video", { id: "video", controls: true, autoplay: true, muted: true, playsinline: true,
    preload: "auto", "aria-label": `Clip ${clipId}`, src: `/api/${base}/clips/${encodeURIComponent(clipId)}/play.mp4` });
  const note = el("p", { class: "muted", id: "player-note", role: "status" }, "Decrypting and loading the clip…");
  video.addEventListener("loadeddata", () => { note.textContent = "Decrypted on this machine; seek with the slider or the arrow keys."; });
  video.addEventListener("error", () => { note.textContent = "This clip could not be played here; try the MP4 download."; note.className = "error"; });
  const close = el("button", { type: "button", class: "secondary", id: "close-player" }, "Close player");
  close.addEventListener("click", () => { video.removeAttribute("src"); video.load(); player.hidden = true; player.replaceChildren(); });
  player.replaceChildren(el("h2", { id: "player-title" }, title), video, note, close);
  player.hidden = false;
  player.scrollIntoView({ block: "nearest" });
  video.focus();
}

function query(after) {
  const params = new URLSearchParams();
  if (filters.camera) params.set("camera", filters.camera);
  if (filters.day) params.set("day", filters.day);
  if (after) params.set("after", after);
  return params.toString();
}

function item(base, c) {
  const id = encodeURIComponent(c.clip_id);
  const seconds = c.end ? Math.round(c.end - c.start) : null;
  return el("li", { class: "card clip", id: `clip-${c.clip_id}` },
    c.segments > 0
      ? el("img", { src: `/api/${base}/clips/${id}/thumbnail`, alt: "", class: "clip-thumb", width: "192", height: "108" })
      : el("div", { class: "clip-thumb" }),
    el("div", {},
      el("h2", {}, `${c.camera}, ${when(c.start)}`),
      el("p", {}, c.finished ? `${seconds} s, ${c.segments} segments, ${c.bytes} bytes` : `recording (${c.segments} segments so far)`),
      el("p", { class: "muted" }, `clip ${c.clip_id}`),
      c.finished ? el("button", { type: "button", class: "play", id: `play-${c.clip_id}`, "data-clip": c.clip_id, "data-title": `${c.camera}, ${when(c.start)}`, "aria-label": `Play clip ${c.clip_id}` }, "Play") : null,
      c.finished ? el("a", { href: `/api/${base}/clips/${id}/mp4`, download: `${c.clip_id}.mp4`, class: "download", "aria-label": `Download clip ${c.clip_id} as MP4` }, "Download MP4") : null));
}
