// Hamster checkout SDK, v1. One ES module, no dependencies, nothing to build.
//
//   import { Hamster } from "https://pay.example/sdk/v1/hamster.js";
//   const pay = Hamster("pk_test_...").checkout({ clientSecret });
//   pay.on("success", p => ...).on("failure", p => ...).on("error", e => ...).mount("#pay");
//
// `success` and `failure` fire only for a final state the server has committed: the event
// stream (SSE) only says "changed", and the SDK then reads the session's authoritative view
// (for a final state or a new status; a payment merely moving on is not read).
// Each fires at most once, and only one of them. Errors reach `error` handlers as
// { code, message } after mount; nothing here throws into the merchant's page.

const VERSION = "1.0.0";
const PUBLISHABLE = /^pk_(test|live)_[0-9A-Za-z]{43}$/;
const SECRET = /^[sr]k_(test|live)_/;
const CLIENT_SECRET = /^(cs_[0-9A-Za-z]+)_secret_[0-9A-Za-z]+$/;
const POLL_FIRST_MS = 1000;
const POLL_MAX_MS = 5000;
const RETRY_MAX_MS = 10000;

const WORDS = {
  en: {
    scan: "Scan with the Hamster app to pay",
    openApp: "Pay in the Hamster app",
    openHere: "On this phone? Open the payment",
    expiresIn: "Expires in",
    waiting: "Waiting for the phone…",
    scanned: "Opened on the phone: confirm there",
    confirmed: "Confirming the payment…",
    success: "Paid",
    failure: "Payment failed",
    canceled_by_customer: "Canceled on the phone",
    card_declined: "the card was declined",
    insufficient_funds: "insufficient funds",
    expired: "The payment time ran out",
    reconnecting: "Reconnecting…",
    qr: "QR code of this payment",
    invalid_publishable_key: "The publishable key is malformed.",
    authentication_error: "The publishable key ending in {last4} was not accepted.",
    secret_key_in_browser: "A secret key must never be used in a browser; it was not sent.",
    session_expired: "This checkout session has expired.",
    invalid_client_secret: "The client secret is malformed.",
    mount_target_missing: "The element to mount into was not found.",
    not_found: "This checkout session was not found.",
    failed: "The checkout could not start.",
    payAtom: "Pay with Atom",
    toAtom: "Opening Atom's payment page…",
    declined_by_customer: "declined on Atom's page",
    action_expired: "the time ran out; nothing was charged",
  },
  ko: {
    scan: "햄스터 앱으로 스캔해서 결제하세요",
    openApp: "햄스터 앱에서 결제",
    openHere: "이 휴대폰에서 결제하기",
    expiresIn: "남은 시간",
    waiting: "휴대폰을 기다리는 중…",
    scanned: "휴대폰에서 열림: 휴대폰에서 확인하세요",
    confirmed: "결제 확인 중…",
    success: "결제 완료",
    failure: "결제 실패",
    canceled_by_customer: "휴대폰에서 취소됨",
    card_declined: "카드가 거절되었습니다",
    insufficient_funds: "잔액이 부족합니다",
    expired: "결제 시간이 지났습니다",
    reconnecting: "다시 연결하는 중…",
    qr: "이 결제의 QR 코드",
    invalid_publishable_key: "공개 키의 형식이 올바르지 않습니다.",
    authentication_error: "{last4}(으)로 끝나는 공개 키가 거부되었습니다.",
    secret_key_in_browser: "비밀 키는 브라우저에서 쓰면 안 됩니다. 전송하지 않았습니다.",
    session_expired: "이 결제 세션은 만료되었습니다.",
    invalid_client_secret: "client secret 형식이 올바르지 않습니다.",
    mount_target_missing: "결제 창을 넣을 요소를 찾지 못했습니다.",
    not_found: "결제 세션을 찾을 수 없습니다.",
    failed: "결제를 시작할 수 없습니다.",
    payAtom: "Atom으로 결제",
    toAtom: "Atom 결제 화면으로 이동 중…",
    declined_by_customer: "Atom 결제 화면에서 거절됨",
    action_expired: "시간이 지났습니다. 청구되지 않았습니다",
  },
};

const CSS = `:host{all:initial;display:block;font:15px/1.4 system-ui,-apple-system,"Segoe UI","Noto Sans KR",sans-serif;color:#1d2330}
.box{box-sizing:border-box;max-width:340px;border:1px solid #d8dce4;border-radius:12px;padding:16px;background:#fff;text-align:center}
.merchant{font-weight:700}.order{color:#5b6475;font-size:13px}.amount{font-size:26px;font-weight:700;margin:6px 0}
img{width:200px;height:200px;display:block;margin:8px auto;image-rendering:pixelated}
a.btn{display:block;margin:10px 0;padding:12px;border-radius:8px;background:#ffcd00;color:#1d2330;font-weight:700;text-decoration:none}
a.small{font-size:13px;color:#2447b8}.count{font-variant-numeric:tabular-nums;color:#5b6475;font-size:13px}
.status{margin-top:8px;font-weight:600}.ok{color:#1e7a3c}.bad{color:#b3261e}
.error{color:#6d1711;background:#fbe3e1;border-radius:8px;padding:10px}`;

function words(locale) {
  return String(locale || "").toLowerCase().startsWith("ko") ? WORDS.ko : WORDS.en;
}

function money(amount, currency, locale) {
  try {
    const f = new Intl.NumberFormat(locale, { style: "currency", currency });
    return f.format(amount / 10 ** f.resolvedOptions().maximumFractionDigits);
  } catch {
    return `${amount} ${currency}`;
  }
}

function element(tag, className, text) {
  const el = document.createElement(tag);
  if (className) el.className = className;
  if (text != null) el.textContent = text;
  return el;
}

function isPhone() {
  const match = (q) => typeof matchMedia === "function" && matchMedia(q).matches;
  const ua = (typeof navigator !== "undefined" && navigator.userAgent) || "";
  return match("(pointer: coarse)") || match("(max-width: 640px)") || /Android|iPhone|iPad|iPod|Mobile/i.test(ua);
}

/** The problem with a publishable key, without looking it up: a code, or null. */
function keyProblem(key) {
  if (SECRET.test(key)) return "secret_key_in_browser";
  if (!PUBLISHABLE.test(key)) return "invalid_publishable_key";
  return null;
}

class Checkout {
  constructor(key, keyError, base, options, settings) {
    this.key = key;
    this.base = base;
    this.settings = settings;
    this.clientSecret = typeof options.clientSecret === "string" ? options.clientSecret.trim() : "";
    const parts = CLIENT_SECRET.exec(this.clientSecret);
    this.sessionId = parts ? parts[1] : null;
    this.problem = keyError || (parts ? null : "invalid_client_secret");
    this.locale = settings.locale || (typeof document !== "undefined" && document.documentElement.lang) || (typeof navigator !== "undefined" && navigator.language) || "en";
    this.t = words(this.locale);
    this.mode = options.mode || settings.mode || "auto";
    // "atom": pay at Atom's own page (the browser goes there and comes back), not the app.
    this.method = options.method === "atom" ? "atom" : null;
    this.handlers = { success: [], failure: [], error: [], change: [] };
    this.fired = {};
    this.view = null;
    this.finished = false;
    this.closed = false;
    this.mounted = false;
    this.retryMs = POLL_FIRST_MS;
  }

  /** Add a handler; chainable. A handler added after its event fired gets it at once. */
  on(name, fn) {
    if (typeof fn !== "function" || !this.handlers[name]) return this;
    this.handlers[name].push(fn);
    if (name in this.fired) this.call(fn, this.fired[name]);
    return this;
  }

  call(fn, payload) {
    queueMicrotask(() => {
      try {
        fn(payload);
      } catch (err) {
        console.error(err);
      }
    });
  }

  emit(name, payload) {
    if (name !== "change") this.fired[name] = payload;
    for (const fn of this.handlers[name]) this.call(fn, payload);
  }

  /** Show the checkout in `target` (a selector or an element) and follow the session. */
  mount(target) {
    try {
      if (this.mounted) return this;
      this.mounted = true;
      const host = typeof target === "string" ? document.querySelector(target) : target;
      if (!host || typeof host.appendChild !== "function") return this.fail("mount_target_missing");
      this.host = host;
      const root = host.attachShadow ? (host.shadowRoot || host.attachShadow({ mode: "open" })) : host;
      this.root = root;
      this.styles(root);
      this.box = element("div", "box");
      root.replaceChildren ? root.replaceChildren(...this.styleNodes, this.box) : root.appendChild(this.box);
      this.state("loading");
      if (this.problem) return this.fail(this.problem);
      this.refresh();
    } catch (err) {
      this.fail("failed", String(err && err.message));
    }
    return this;
  }

  /** Stop following the session and remove the checkout from the page. */
  unmount() {
    this.stop();
    if (this.box) this.box.remove();
    return this;
  }

  styles(root) {
    this.styleNodes = [];
    if (root === this.host) return;
    try {
      const sheet = new CSSStyleSheet();
      sheet.replaceSync(CSS);
      root.adoptedStyleSheets = [sheet];
    } catch {
      this.styleNodes = [element("style", null, CSS)];
    }
  }

  state(name) {
    if (this.host) this.host.setAttribute("data-hamster-state", name);
  }

  fail(code, detail) {
    const key = this.key || "";
    const message = (this.t[code] || detail || code).replace("{last4}", `…${key.slice(-4)}`);
    this.stop();
    this.state("error");
    if (this.box) this.box.replaceChildren(element("p", "error", message));
    this.emit("error", { code, message });
    return this;
  }

  stop() {
    this.closed = true;
    if (this.stream) this.stream.close();
    clearTimeout(this.timer);
    clearTimeout(this.pollTimer);
    clearInterval(this.ticker);
  }

  url(path) {
    return `${this.base}/api/public/checkout/sessions/${encodeURIComponent(this.sessionId)}${path}`;
  }

  /** Read the session's view; one read at a time, one more if asked meanwhile. */
  refresh() {
    if (this.closed) return;
    if (this.busy) {
      this.again = true;
      return;
    }
    this.busy = true;
    this.again = false;
    this.load().finally(() => {
      this.busy = false;
      if (this.again) this.refresh();
    });
  }

  async load() {
    let response;
    let body = null;
    try {
      response = await fetch(`${this.url("")}?clientSecret=${encodeURIComponent(this.clientSecret)}`, {
        headers: { Authorization: `Bearer ${this.key}`, Accept: "application/json" },
        cache: "no-store",
        credentials: "omit",
      });
      body = await response.json().catch(() => null);
    } catch {
      return this.later();
    }
    if (this.closed) return;
    const code = body && body.code;
    if (response.ok && body) {
      this.retryMs = POLL_FIRST_MS;
      return this.apply(body);
    }
    if (response.status === 401) return this.fail("authentication_error");
    if (response.status === 410 || code === "session_expired") {
      return this.view ? this.finish({ result: "failure", code: "expired" }) : this.fail("session_expired");
    }
    if (response.status === 429 || response.status >= 500) return this.later();
    return this.fail(code || "failed", body && (body.detail || body.title));
  }

  /** A read failed for a passing reason: read again after a growing, capped pause. */
  later() {
    if (this.closed) return;
    this.note(this.t.reconnecting);
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.refresh(), this.retryMs);
    this.retryMs = Math.min(this.retryMs * 2, RETRY_MAX_MS);
  }

  apply(view) {
    const first = !this.view;
    const before = this.view && this.view.status;
    this.view = view;
    if (view.outcome) {
      if (first && view.outcome.code === "expired") return this.fail("session_expired");
      if (first) this.render();
      return this.finish(view.outcome);
    }
    if (first) {
      this.render();
      this.follow();
      if (this.phone && view.status === "open" && this.settings.deepLink !== false) {
        location.assign(this.appUrl);
      }
    }
    // The provider's page (Atom's): go there; it sends the browser back to the gateway's
    // completion page, and the merchant's page, mounted again, hears the committed outcome.
    if (view.action && view.action.type === "redirect" && !this.away) {
      this.away = true;
      this.note(this.t.toAtom);
      this.emit("change", { status: "requires_action" });
      location.assign(view.action.url);
      return;
    }
    if (view.status !== before) {
      this.state(view.status);
      this.note(this.t[view.status === "open" ? "waiting" : view.status] || this.t.waiting);
      this.emit("change", { status: view.status });
    }
  }

  finish(outcome) {
    if (this.finished) return;
    this.finished = true;
    const payment = (this.view && this.view.payment) || null;
    const result = outcome.result === "success" ? "success" : "failure";
    const payload = {
      sessionId: this.sessionId,
      result,
      code: outcome.code || null,
      payment,
      tid: payment && payment.tid,
      status: payment && payment.status,
      amount: payment ? payment.amount : this.view && this.view.amount,
      currency: payment ? payment.currency : this.view && this.view.currency,
      approvalNo: payment && payment.approvalNo,
      failureReason: (payment && payment.failureReason) || outcome.code || null,
    };
    this.stop();
    this.state(result);
    const why = result === "failure" && (this.t[payload.code] || payload.failureReason);
    this.note(result === "success" ? this.t.success : `${this.t.failure}${why ? `: ${why}` : ""}`, result === "success" ? "ok" : "bad");
    if (this.countEl) this.countEl.textContent = "";
    // A finished session's QR code and links lead nowhere: take them away.
    if (this.box) this.box.querySelectorAll("img, a").forEach((el) => el.remove());
    this.emit(result, payload);
  }

  render() {
    const v = this.view;
    const t = this.t;
    this.phone = this.mode === "redirect" || (this.mode === "auto" && isPhone());
    this.appUrl = new URL(v.appUrl, this.base).href;
    const nodes = [
      element("div", "merchant", v.merchantName),
      element("div", "order", v.orderName),
      element("div", "amount", money(v.amount, v.currency, this.locale)),
    ];
    if (this.method === "atom") {
      if (v.status === "open" || v.status === "scanned") {
        const go = element("button", "btn", t.payAtom);
        go.type = "button";
        go.addEventListener("click", () => {
          go.disabled = true;
          this.payHosted();
        });
        nodes.push(go);
      }
    } else if (this.phone) {
      const open = element("a", "btn", t.openApp);
      open.href = this.appUrl;
      nodes.push(open);
    } else if (v.qr && v.qr.svg) {
      const img = element("img");
      img.src = new URL(v.qr.svg, this.base).href;
      img.alt = t.qr;
      img.width = img.height = 200;
      const here = element("a", "small", t.openHere);
      here.href = this.appUrl;
      nodes.push(img, element("div", null, t.scan), here);
    }
    this.countEl = element("div", "count");
    this.statusEl = element("div", "status");
    this.statusEl.setAttribute("role", "status");
    this.statusEl.setAttribute("aria-live", "polite");
    nodes.push(this.countEl, this.statusEl);
    this.box.replaceChildren(...nodes);
    this.countdown();
  }

  /** Ask the gateway to pay this session at Atom's page; the view then names the page. */
  async payHosted() {
    let response;
    let body = null;
    try {
      response = await fetch(`${this.url("/pay")}?clientSecret=${encodeURIComponent(this.clientSecret)}`, {
        method: "POST",
        headers: { Authorization: `Bearer ${this.key}`, "Content-Type": "application/json", Accept: "application/json" },
        body: JSON.stringify({ method: this.method }),
        cache: "no-store",
        credentials: "omit",
      });
      body = await response.json().catch(() => null);
    } catch {
      return this.later();
    }
    if (this.closed) return;
    if (response.status === 202 && body) return this.apply(body);
    if (response.status === 409) return this.refresh(); // paid or closed meanwhile: read it
    return this.fail((body && body.code) || "failed", body && (body.detail || body.title));
  }

  note(text, tone) {
    if (!this.statusEl) return;
    this.statusEl.textContent = text;
    this.statusEl.className = `status ${tone || ""}`;
  }

  countdown() {
    const end = Date.parse(this.view.expiresAt);
    if (!end) return;
    let asked = 0;
    const tick = () => {
      const left = Math.max(0, Math.ceil((end - Date.now()) / 1000));
      this.countEl.textContent = `${this.t.expiresIn} ${Math.floor(left / 60)}:${String(left % 60).padStart(2, "0")}`;
      // The server commits the expiry; ask it a few times once the time is up.
      if (left === 0 && asked < 5 && (Date.now() - end) / 1000 >= asked * 2) {
        asked += 1;
        this.refresh();
      }
    };
    tick();
    this.ticker = setInterval(tick, 1000);
  }

  /** Follow the session: SSE; where it cannot connect at all, polling with capped backoff. */
  follow() {
    if (this.closed) return;
    if (typeof EventSource !== "function") return this.poll();
    const query = `?key=${encodeURIComponent(this.key)}&clientSecret=${encodeURIComponent(this.clientSecret)}`;
    const stream = new EventSource(this.url(`/events${query}`));
    this.stream = stream;
    let opened = false;
    let failures = 0;
    // (Re)connected: read once, for what changed while no stream was open. The browser
    // reconnects by itself with Last-Event-ID after a drop; the server replays a change then.
    stream.addEventListener("open", () => {
      opened = true;
      failures = 0;
      this.refresh();
    });
    stream.addEventListener("changed", (event) => {
      if (this.needsRead(event.data)) this.refresh();
    });
    stream.addEventListener("error", () => {
      if (this.closed) return;
      failures += 1;
      if (stream.readyState === 2 || (!opened && failures >= 3)) {
        stream.close();
        this.stream = null;
        if (!opened) return this.poll();
        this.note(this.t.reconnecting);
        clearTimeout(this.timer);
        this.timer = setTimeout(() => this.follow(), this.retryMs);
        this.retryMs = Math.min(this.retryMs * 2, RETRY_MAX_MS);
      }
    });
  }

  /** Whether a change the stream announced needs the session read: its end (the outcome is
   *  always read, never taken from the stream), a new status, or the provider's page. */
  needsRead(data) {
    let change = null;
    try {
      change = JSON.parse(data);
    } catch {
      return true;
    }
    if (!change || change.final !== false || !this.view) return true;
    return change.status !== this.view.status || change.paymentStatus === "REQUIRES_ACTION";
  }

  poll() {
    let delay = POLL_FIRST_MS;
    const tick = () => {
      if (this.closed) return;
      this.refresh();
      delay = Math.min(delay * 1.5, POLL_MAX_MS);
      this.pollTimer = setTimeout(tick, delay);
    };
    this.pollTimer = setTimeout(tick, delay);
  }
}

/**
 * The SDK for one publishable key. Never throws: a bad key is reported to `error` handlers
 * of each checkout after `mount`, and a secret key is never sent anywhere.
 * Options: apiBase (default: where this file was loaded from), locale, mode ("auto" | "qr" |
 * "redirect"), deepLink (false: on a phone, show the button without opening the app at once).
 */
export function Hamster(publishableKey, options) {
  const settings = options && typeof options === "object" ? options : {};
  const key = typeof publishableKey === "string" ? publishableKey.trim() : "";
  let base;
  try {
    base = new URL(settings.apiBase || import.meta.url).origin;
  } catch {
    base = typeof location !== "undefined" ? location.origin : "";
  }
  const problem = keyProblem(key);
  return Object.freeze({
    version: VERSION,
    checkout(params) {
      return new Checkout(problem ? "" : key, problem, base, params && typeof params === "object" ? params : {}, settings);
    },
  });
}

export default Hamster;
