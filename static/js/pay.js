// Card entry: save the card with a SetupIntent (Stripe.js), then the server charges it (or enrolls it in autopay). Works with real
// Stripe.js and with localstripe's fake. One Pay click is one attempt: the button stays disabled while it runs.
(function () {
  "use strict";
  var form = document.getElementById("card-form");
  if (!form || typeof Stripe === "undefined") { return; }
  var cfg = form.dataset;
  // The page's language: Stripe.js localizes its card fields and errors; our words come translated in data-msg-*.
  var stripe = Stripe(cfg.publishableKey, {locale: cfg.locale || "auto"});
  function t(name, english) { return cfg[name] || english; }
  var card = stripe.elements().create("card");
  card.mount("#card-element");
  var button = document.getElementById("pay-button");
  var errors = document.getElementById("card-errors");
  var status = document.getElementById("pay-status");
  var label = button.textContent;
  var busy = false;

  // Before the Pay request is sent nothing can have been charged; after it, only the server knows.
  var NOT_CHARGED = t("msgNotCharged", "We couldn't reach the card processor. Nothing was charged. Please try again.");

  function fail(message) {
    errors.textContent = message || NOT_CHARGED;
    status.textContent = "";
    button.disabled = false;
    button.textContent = label;
    busy = false;
  }

  function post(url, body) {
    return fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: {"Content-Type": "application/json", "X-CSRFToken": cfg.csrf},
      body: JSON.stringify(body || {})
    }).then(function (response) {
      // A proxy's or server's error page is not an answer about the money: treat it as unknown.
      return response.json().catch(function () { return {status: "unknown"}; });
    }, function () { return {status: "unknown"}; });
  }

  function unknown() {  // the answer to a Pay click was lost: the server tells the truth at the attempt page
    if (cfg.attemptUrl) { window.location.assign(cfg.attemptUrl); return; }
    fail(t("msgNotConfirmed", "We couldn't confirm that your card was saved. Reload this page to see whether autopay is on."));
  }

  function finish(result) {
    if (result.setup_secret) {  // the server kept nothing: a new SetupIntent for the next card
      cfg.setupSecret = result.setup_secret;
      cfg.setupId = result.setup_id;
    }
    if (["succeeded", "processing", "failed", "enrolled"].indexOf(result.status) >= 0) {
      if (result.redirect) { window.location.assign(result.redirect); return; }
    }
    fail(result.message);
  }

  form.addEventListener("submit", async function (event) {
    event.preventDefault();
    if (busy) { return; }
    busy = true;
    button.disabled = true;
    button.textContent = t("msgProcessing", "Processing…");
    errors.textContent = "";
    status.textContent = t("msgChecking", "Checking your card…");
    var body;
    try {
      var setup = await stripe.confirmCardSetup(cfg.setupSecret, {payment_method: {card: card}});
      if (setup.error || !setup.setupIntent || setup.setupIntent.status !== "succeeded") {
        fail(setup.error && setup.error.message ? setup.error.message : t("msgCardUnusable", "Your card could not be used. Try another card."));
        return;
      }
      status.textContent = t("msgPaying", "Paying…");
      body = {setup_intent: setup.setupIntent.id, attempt_key: cfg.attemptKey, checkout: cfg.checkout};
      form.querySelectorAll("input[type=checkbox]").forEach(function (box) { body[box.name] = box.checked; });
    } catch (err) {
      fail(NOT_CHARGED);
      return;
    }
    try {
      var result = await post(cfg.confirmUrl, body);
      if (result.status === "requires_action") {
        status.textContent = t("msgBankCheck", "Your bank wants to confirm it's you…");
        try { await stripe.confirmCardPayment(result.client_secret); } catch (err) { /* the server asks Stripe */ }
        // Whatever Stripe.js reports, the server asks Stripe for the final state.
        var refreshed = await post(result.refresh, {});
        // Still waiting for the bank: the result page says so and checks again (never a used card form).
        result = refreshed.status === "requires_action" ? {status: "processing", redirect: result.redirect} : refreshed;
      }
      if (result.status === "unknown") { unknown(); return; }
      finish(result);
    } catch (err) {
      unknown();
    }
  });
})();
