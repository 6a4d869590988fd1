// The demo shop's page script: load the Hamster SDK from the payment gateway, mount the
// checkout, and believe nothing until the shop's own server has looked the session up.
const box = document.getElementById("checkout");
const result = document.getElementById("result");
const log = document.getElementById("events");
window.shopEvents = [];

function record(name, detail) {
  window.shopEvents.push({ name, detail });
  const item = document.createElement("li");
  item.textContent = `${name} ${JSON.stringify(detail)}`;
  log.appendChild(item);
}

async function verify() {
  // The page is never trusted: the shop's server asks the gateway with its secret key.
  const answer = await fetch(`/shop/orders/${encodeURIComponent(box.dataset.orderId)}/verify`);
  return answer.ok ? answer.json() : null;
}

async function start() {
  const { Hamster } = await import(box.dataset.sdk);
  const hamster = Hamster(box.dataset.publishableKey, { locale: document.documentElement.lang });
  // data-method="atom": the customer pays at Atom's page and comes back to this page.
  const pay = hamster.checkout({ clientSecret: box.dataset.clientSecret, method: box.dataset.method || undefined });
  pay.on("success", async (payment) => {
    record("success", payment);
    const checked = await verify();
    result.textContent = checked && checked.status === "confirmed" && checked.paymentStatus === "SUCCESS"
      ? `paid (${payment.tid})`
      : "paid? the server could not confirm it";
    result.className = "paid";
  });
  pay.on("failure", (outcome) => {
    record("failure", outcome);
    result.textContent = `not paid: ${outcome.code || outcome.failureReason}`;
    result.className = "failed";
  });
  pay.on("error", (error) => {
    record("error", error);
    result.textContent = `error: ${error.code}`;
    result.className = "failed";
  });
  pay.on("change", (change) => record("change", change));
  pay.mount("#checkout");
}

start().catch((err) => {
  record("load_failed", String(err));
  result.textContent = "the payment window could not load";
});
