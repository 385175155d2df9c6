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
// until the button is held. A press asks the doorbell for its speaker (POST /live/link-talk; it
// refuses while someone else talks there) while the microphone opens; then the microphone's track
// goes on the sender (no renegotiation). Let go, the track is muted for TAIL_MS (silence still
// flows, pushing the last words out of the doorbell's jitter buffer), then taken off, the
// microphone is closed and the speaker is given back: nothing is sent between presses.
const TAIL_MS = 150;
const talk = {
  sender: null, // the RTCRtpSender of the audio section
  feed: null, // the session's feed secret, which authorises its talk calls
  track: null, // the microphone's track while talking
  state: "idle", // idle, starting, talking, ending
  press: 0, // counts presses, so a press let go while starting is undone when it completes
  timer: null,
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

function showPressed(pressed) {
  talkButton.setAttribute("aria-pressed", pressed ? "true" : "false");
  talkButton.textContent = pressed ? "Talking… let go to stop" : "Hold to talk";
}

async function askSpeaker(talking) {
  const response = await fetch("/live/link-talk", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ feed: talk.feed, talk: talking }),
  });
  if (response.ok) return null;
  let body = null;
  try {
    body = await response.json();
  } catch (err) {
    body = null;
  }
  return body && body.error ? body.error : { code: "", message: response.statusText };
}

function microphoneError(err) {
  const name = err && err.name;
  if (name === "NotAllowedError") {
    return "The browser did not allow the microphone. Allow it for this page to talk to the door.";
  }
  if (name === "NotFoundError") return "This device has no microphone to talk with.";
  return "The microphone could not be opened: " + err;
}

async function startTalking() {
  if (talk.sender === null || talkButton.disabled) return;
  if (talk.state === "ending") {
    // Pressed again before the last press was over: carry on with the same speaker.
    clearTimeout(talk.timer);
    talk.track.enabled = true;
    talk.state = "talking";
    showPressed(true);
    talkSays("You are talking to the door.", "talking");
    return;
  }
  if (talk.state !== "idle") return;
  talk.state = "starting";
  const press = ++talk.press;
  showPressed(true);
  talkSays("Opening the microphone…", "pending");
  const [claim, media] = await Promise.allSettled([
    askSpeaker(true),
    navigator.mediaDevices.getUserMedia(MICROPHONE),
  ]);
  const track = media.status === "fulfilled" ? media.value.getAudioTracks()[0] : null;
  const refused = claim.status === "fulfilled" ? claim.value : { code: "", message: String(claim.reason) };
  const undo = () => {
    if (track !== null) track.stop();
    if (refused === null) askSpeaker(false).catch(() => {});
  };
  if (press !== talk.press) {
    undo(); // let go before the doorbell and the microphone were ready
    return;
  }
  if (refused !== null || track === null) {
    undo();
    talk.state = "idle";
    showPressed(false);
    if (refused !== null && refused.code === "speaker_busy") {
      talkSays("Someone else is talking to the door: " + refused.message + ".", "error");
    } else if (refused !== null) {
      talkSays("The doorbell did not take your voice: " + refused.message, "error");
    } else {
      talkSays(microphoneError(media.reason), "error");
    }
    return;
  }
  talk.track = track;
  talk.state = "talking";
  await talk.sender.replaceTrack(track);
  talkSays("You are talking to the door.", "talking");
}

function stopTalking() {
  if (talk.state === "idle" || talk.state === "ending") return;
  showPressed(false);
  talkSays("");
  if (talk.state === "starting") {
    talk.press++; // startTalking undoes the press when it completes
    talk.state = "idle";
    return;
  }
  talk.state = "ending";
  talk.track.enabled = false;
  talk.timer = setTimeout(finishTalking, TAIL_MS);
}

function finishTalking() {
  talk.state = "idle";
  talk.sender.replaceTrack(null).catch(() => {});
  talk.track.stop();
  talk.track = null;
  askSpeaker(false).catch(() => {});
}

function endTalk() {
  // The session is over (the doorbell gives its speaker back by itself).
  talkButton.disabled = true;
  clearTimeout(talk.timer);
  if (talk.track !== null) talk.track.stop();
  talk.track = null;
  talk.press++;
  talk.state = "idle";
  showPressed(false);
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
  // The doorbell takes sound when its camera has a speaker.
  if (body.talk === true && navigator.mediaDevices) {
    talk.sender = audio.sender;
    talk.feed = body.feed;
    talkButton.hidden = false;
    talkHelp.hidden = false;
  }
  listen(body.feed, pc);
}

start().catch((err) => show("Live view could not start: " + err, "error"));
