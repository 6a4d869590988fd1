// The customer app's one script (no inline scripts: the pages' CSP allows 'self' only).
// Three small jobs: the payment page's countdown, reloading that page while the engine
// decides, and the QR payment menu's camera scanner (BarcodeDetector, where the browser has it).
"use strict";

function countdown() {
  const el = document.getElementById("countdown");
  if (!el) return;
  const end = Date.parse(el.dataset.expiresAt);
  if (!end) return;
  const tick = () => {
    const left = Math.max(0, Math.ceil((end - Date.now()) / 1000));
    el.textContent = left ? `${Math.floor(left / 60)}:${String(left % 60).padStart(2, "0")}` : el.dataset.expired;
    if (!left) {
      clearInterval(timer);
      document.querySelectorAll("#confirm, #cancel").forEach((b) => (b.disabled = true));
      // The server ends the session; show what it committed.
      setTimeout(() => location.replace(location.pathname), 1500);
    }
  };
  const timer = setInterval(tick, 1000);
  tick();
}

function reloadWhileWaiting() {
  const pay = document.getElementById("pay");
  const every = pay && Number(pay.dataset.reload);
  if (every) setTimeout(() => location.replace(location.pathname + location.search), every);
}

function oneSubmit() {
  // A second tap must not post twice (the server would refuse it anyway).
  document.querySelectorAll("#pay form").forEach((form) =>
    form.addEventListener("submit", () => {
      document.querySelectorAll("#pay button").forEach((b) => (b.disabled = true));
    }),
  );
}

/** A payment link of this app, or null: only /app/pay/<id> on this very origin is followed. */
function paymentLink(text) {
  try {
    const url = new URL(String(text).trim(), location.href);
    if (url.origin === location.origin && /^\/app\/pay\/[A-Za-z0-9_]+$/.test(url.pathname)) return url.pathname;
  } catch {
    /* not a URL */
  }
  return null;
}

function scanner() {
  const section = document.getElementById("scan");
  if (!section) return;
  const video = document.getElementById("camera");
  const start = document.getElementById("camera-start");
  const stop = document.getElementById("camera-stop");
  const message = document.getElementById("scan-message");
  const say = (text) => {
    message.textContent = text;
    message.hidden = !text;
  };
  const go = (text) => {
    const path = paymentLink(text);
    if (path) location.assign(path);
    else say(section.dataset.notOurs);
    return Boolean(path);
  };
  document.getElementById("link-form").addEventListener("submit", (event) => {
    event.preventDefault();
    go(document.getElementById("link").value);
  });
  let stream = null;
  const halt = () => {
    if (stream) stream.getTracks().forEach((track) => track.stop());
    stream = null;
    video.hidden = stop.hidden = true;
    start.hidden = false;
  };
  stop.addEventListener("click", halt);
  if (!("BarcodeDetector" in window) || !navigator.mediaDevices) {
    start.hidden = true;
    say(section.dataset.unsupported);
    return;
  }
  start.addEventListener("click", async () => {
    try {
      const detector = new window.BarcodeDetector({ formats: ["qr_code"] });
      stream = await navigator.mediaDevices.getUserMedia({ video: { facingMode: "environment" } });
      video.srcObject = stream;
      video.hidden = stop.hidden = false;
      start.hidden = true;
      await video.play();
      const look = async () => {
        if (!stream) return;
        const codes = await detector.detect(video).catch(() => []);
        for (const code of codes) {
          if (paymentLink(code.rawValue)) {
            halt();
            return go(code.rawValue);
          }
        }
        setTimeout(look, 250);
      };
      look();
    } catch {
      halt();
      say(section.dataset.cameraFailed);
    }
  });
}

document.addEventListener("DOMContentLoaded", () => {
  countdown();
  reloadWhileWaiting();
  oneSubmit();
  scanner();
});
