// Doorward live view in the browser: the WebRTC exchange with the doorbell, authorised by the
// single-use link token in the page URL, the doorbell events of the session, and hold-to-talk:
// the browser's microphone goes to the doorbell's speaker only while the talk button is held.
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
const talkButton = document.getElementById("talk");
const talkHelp = document.getElementById("talk-help");
const talkStatus = document.getElementById("talk-status");
// Pictures and sound play in the one video element. It starts muted, which browsers let play
// without a click; the button turns the sound on once the doorbell sends some.
const stream = new MediaStream();

soundButton.addEventListener("click", () => {
  video.muted = !video.muted;
  soundButton.textContent = video.muted ? "Turn sound on" : "Turn sound off";
  video.play().catch(() => {});
});

// Hold-to-talk. The offer sends audio from the start (sendrecv), but its sender has no track
// until the button is held: then the microphone's track is put on it (no renegotiation), and on
// release it is taken off again and the microphone is closed, so nothing is sent between presses.
const talk = {
  sender: null, // the RTCRtpSender of the audio section
  track: null, // the microphone's track while the button is held
  held: false,
  press: 0, // counts presses, so a release during getUserMedia stops the late track
};

const MICROPHONE = {
  // The phone plays the visitor's sound while the owner talks: echo cancellation keeps the
  // visitor from hearing themselves back through the doorbell.
  audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true, channelCount: 1 },
  video: false,
};

function talkSays(message, state) {
  talkStatus.textContent = message;
  talkStatus.className = state || "";
}

async function startTalking() {
  if (talk.held || talk.sender === null || talkButton.disabled) return;
  talk.held = true;
  const press = ++talk.press;
  talkButton.setAttribute("aria-pressed", "true");
  talkButton.textContent = "Talking… let go to stop";
  talkSays("Opening the microphone…", "pending");
  let track = null;
  try {
    const media = await navigator.mediaDevices.getUserMedia(MICROPHONE);
    track = media.getAudioTracks()[0];
  } catch (err) {
    stopTalking();
    const name = err && err.name;
    talkSays(
      name === "NotAllowedError"
        ? "The browser did not allow the microphone. Allow it for this page to talk to the door."
        : name === "NotFoundError"
          ? "This device has no microphone to talk with."
          : "The microphone could not be opened: " + err,
      "error",
    );
    return;
  }
  if (press !== talk.press || !talk.held) {
    track.stop(); // let go before the microphone opened
    return;
  }
  talk.track = track;
  await talk.sender.replaceTrack(track);
  talkSays("You are talking to the door.", "talking");
}

function stopTalking() {
  if (!talk.held) return;
  talk.held = false;
  talk.press++;
  talkButton.setAttribute("aria-pressed", "false");
  talkButton.textContent = "Hold to talk";
  if (talk.sender !== null) talk.sender.replaceTrack(null).catch(() => {});
  if (talk.track !== null) {
    talk.track.stop();
    talk.track = null;
  }
  if (talkStatus.className === "talking" || talkStatus.className === "pending") talkSays("");
}

function refuseTalk(holder) {
  // The doorbell's speaker is someone else's: say who, and send nothing.
  stopTalking();
  talkSays("Someone else is talking to the door (" + holder + "). Try again when they finish.", "error");
}

function endTalk() {
  stopTalking();
  talkButton.disabled = true;
}

const TALK_KEYS = new Set([" ", "Enter"]);
talkButton.addEventListener("pointerdown", (e) => {
  if (e.button !== 0) return;
  talkButton.setPointerCapture(e.pointerId); // the release counts wherever the finger goes
  startTalking();
});
talkButton.addEventListener("pointerup", stopTalking);
talkButton.addEventListener("pointercancel", stopTalking);
talkButton.addEventListener("keydown", (e) => {
  if (!TALK_KEYS.has(e.key)) return;
  e.preventDefault(); // no click, no scrolling; a held key repeats keydown, which is ignored
  startTalking();
});
talkButton.addEventListener("keyup", (e) => {
  if (!TALK_KEYS.has(e.key)) return;
  e.preventDefault();
  stopTalking();
});
talkButton.addEventListener("blur", stopTalking);
talkButton.addEventListener("contextmenu", (e) => e.preventDefault()); // a long press on a phone
document.addEventListener("visibilitychange", () => {
  if (document.hidden) stopTalking();
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
    endTalk();
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
  window.liveView = { peer: pc, talk: talk }; // for diagnostics from the browser's console
  pc.addTransceiver("video", { direction: "recvonly" });
  const audio = pc.addTransceiver("audio", { direction: "sendrecv" });
  pc.addEventListener("track", (e) => {
    stream.addTrack(e.track);
    if (e.track.kind === "audio") soundButton.hidden = false;
    if (video.srcObject !== stream) video.srcObject = stream;
  });
  pc.addEventListener("connectionstatechange", () => {
    if (pc.connectionState === "connected") show("Live", "live");
    if (pc.connectionState === "failed") {
      endTalk();
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
  // The doorbell takes sound only if it has a speaker: its answer then receives audio.
  const direction = audio.currentDirection;
  if ((direction === "sendrecv" || direction === "sendonly") && navigator.mediaDevices) {
    talk.sender = audio.sender;
    talkButton.hidden = false;
    talkHelp.hidden = false;
  }
  listen(body.feed, pc);
}

start().catch((err) => show("Live view could not start: " + err, "error"));
