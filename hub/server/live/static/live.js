// Doorward live view in the browser: the WebRTC exchange with the doorbell, authorised by the
// single-use link token in the page URL, and the doorbell events of the session.
"use strict";

const MESSAGES = {
  expired: "This live link has expired. Ask the owner for a new link.",
  token_replayed: "This live link was already used: each link works once. Ask the owner for a new link.",
  token_invalid: "This live link is not valid (it was changed, or its owner was removed). Ask the owner for a new link.",
  busy: "Too many people are watching this doorbell right now. Try again in a minute.",
  rate_limited: "Too many attempts from this network. Wait a minute and reload the page.",
};
const ICE_GATHER_TIMEOUT_MS = 5000;

const statusEl = document.getElementById("status");
const video = document.getElementById("video");
const eventsEl = document.getElementById("events");
const soundButton = document.getElementById("sound");
// Pictures and sound play in the one video element. It starts muted, which browsers let play
// without a click; the button turns the sound on once the doorbell sends some.
const stream = new MediaStream();

soundButton.addEventListener("click", () => {
  video.muted = !video.muted;
  soundButton.textContent = video.muted ? "Turn sound on" : "Turn sound off";
  video.play().catch(() => {});
});

function show(message, state) {
  statusEl.textContent = message;
  statusEl.className = state === "error" ? "error" : "";
  document.body.dataset.state = state;
}

function addEvent(text) {
  const item = document.createElement("li");
  item.textContent = text;
  eventsEl.prepend(item);
}

function gathered(pc) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ICE_GATHER_TIMEOUT_MS);
    pc.addEventListener("icegatheringstatechange", () => {
      if (pc.iceGatheringState === "complete") {
        clearTimeout(timer);
        resolve();
      }
    });
  });
}

function listen(feed, pc) {
  const source = new EventSource("/live/link-events?feed=" + encodeURIComponent(feed));
  source.addEventListener("doorbell.pressed", (e) => {
    const event = JSON.parse(e.data);
    addEvent("Doorbell pressed at " + new Date(event.time * 1000).toLocaleTimeString());
  });
  source.addEventListener("motion", (e) => {
    const event = JSON.parse(e.data);
    addEvent("Motion at " + new Date(event.time * 1000).toLocaleTimeString());
  });
  source.addEventListener("ended", (e) => {
    source.close();
    pc.close();
    const reason = JSON.parse(e.data).reason;
    const why = reason === "max_duration" ? " (time limit reached)" : "";
    show("Live view has ended" + why + ". Ask the owner for a new link to watch again.", "ended");
  });
}

async function start() {
  const token = new URLSearchParams(location.search).get("t");
  // The token works once: keep it out of the history and of anything copied from the bar.
  history.replaceState(null, "", location.pathname);
  if (!token) {
    show("This page needs a live link from the doorbell's owner.", "error");
    return;
  }
  const pc = new RTCPeerConnection({ iceServers: [] });
  window.liveView = { peer: pc }; // for diagnostics from the browser's console
  pc.addTransceiver("video", { direction: "recvonly" });
  pc.addTransceiver("audio", { direction: "recvonly" });
  pc.addEventListener("track", (e) => {
    stream.addTrack(e.track);
    if (e.track.kind === "audio") soundButton.hidden = false;
    if (video.srcObject !== stream) video.srcObject = stream;
  });
  pc.addEventListener("connectionstatechange", () => {
    if (pc.connectionState === "connected") show("Live", "live");
    if (pc.connectionState === "failed") {
      show("The connection to the doorbell failed. Are you on the same network?", "error");
    }
  });
  await pc.setLocalDescription(await pc.createOffer());
  await gathered(pc);
  const response = await fetch("/live/link-offer", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ token: token, sdp: pc.localDescription.sdp }),
  });
  let body = null;
  try {
    body = await response.json();
  } catch (err) {
    body = null;
  }
  if (!response.ok) {
    pc.close();
    const error = body && body.error ? body.error : { code: "", message: response.statusText };
    show(MESSAGES[error.code] || "The doorbell refused live view: " + error.message, "error");
    return;
  }
  await pc.setRemoteDescription({ type: "answer", sdp: body.sdp });
  listen(body.feed, pc);
}

start().catch((err) => show("Live view could not start: " + err, "error"));
