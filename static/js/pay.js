// Card entry: save the card with a SetupIntent (Stripe.js), then the server charges it (or enrolls it in autopay). Works with real
// Stripe.js and with localstripe's fake. One Pay click is one attempt: the button stays disabled while it runs.
// Stripe.js is loaded from here (not a <script> tag) so a blocked or failed load is noticed and said at once: the card form
// and its Pay button stay hidden until the card Element is mounted, and never show when they cannot work.
(function () {
  "use strict";
  var form = document.getElementById("card-form");
  if (!form) { return; }
  var cfg = form.dataset;
  function t(name, english) { return cfg[name] || english; }
  var button = document.getElementById("pay-button");
  var errors = document.getElementById("card-errors");
  var status = document.getElementById("pay-status");
  var loading = document.getElementById("card-loading");
  var unavailable = document.getElementById("card-unavailable");
  var label = button.textContent;
  var busy = false;
  var stripe = null;
  var card = null;
  var LOAD_TIMEOUT_MS = parseInt(cfg.loadTimeoutMs || "15000", 10);

  // Before the Pay request is sent nothing can have been charged; after it, only the server knows.
  var NOT_CHARGED = t("msgNotCharged", "We couldn't reach the card processor. Nothing was charged. Please try again.");

  function say(element, message) {  // a message a keyboard or screen reader user is taken to
    element.textContent = message;
    element.focus();
  }

  function cannotLoad() {  // Stripe.js blocked, failed or too slow: say so, never offer a Pay button that cannot work
    if (card) { return; }
    if (loading) { loading.hidden = true; }
    form.hidden = true;
    button.disabled = true;
    if (unavailable) { unavailable.hidden = false; unavailable.focus(); }
  }

  function start() {
    if (card) { return; }
    try {
      // The page's language: Stripe.js localizes its card fields and errors; our words come translated in data-msg-*.
      stripe = Stripe(cfg.publishableKey, {locale: cfg.locale || "auto"});
      card = stripe.elements().create("card");
      card.mount("#card-element");
    } catch (err) {
      card = null;
      cannotLoad();
      return;
    }
    if (loading) { loading.hidden = true; }
    if (unavailable) { unavailable.hidden = true; }
    form.hidden = false;
    button.disabled = false;
  }

  function load() {
    if (typeof Stripe !== "undefined") { start(); return; }
    if (loading) { loading.hidden = false; }
    var timer = window.setTimeout(cannotLoad, LOAD_TIMEOUT_MS);
    var script = document.createElement("script");
    script.src = cfg.stripeJsUrl;
    script.onload = function () {
      window.clearTimeout(timer);
      if (typeof Stripe === "undefined") { cannotLoad(); return; }
      start();  // also after the timeout: a late Stripe.js still gives a working form
    };
    script.onerror = function () { window.clearTimeout(timer); cannotLoad(); };
    document.head.appendChild(script);
  }

  function fail(message) {
    status.textContent = "";
    button.disabled = false;
    button.textContent = label;
    busy = false;
    say(errors, message || NOT_CHARGED);
  }

  // Why Stripe.js could not save the card. Saving a card (a SetupIntent) never charges it, so "nothing was charged" is
  // true for every answer here.
  function setupFailure(setup) {
    var error = setup.error;
    if (error && (error.code === "card_declined" || error.decline_code)) {  // (localstripe's type is not card_error)
      return t("msgDeclined", "Your card was declined. Nothing was charged. Try another card, or call the number on the back of your card to ask your bank why.");
    }
    if (error && error.type === "card_error") {
      return (error.message ? error.message + " " : "") + t("msgNothingCharged", "Nothing was charged.");
    }
    if (error && error.message) { return error.message; }  // e.g. an incomplete card number
    if (setup.setupIntent) {  // the bank's check was not completed (the fake's failed 3DS has no error)
      return t("msgCheckNotCompleted", "The check with your bank was not completed. Nothing was charged. Try again, or try another card.");
    }
    return t("msgCardUnusable", "Your card could not be used. Nothing was charged. Try another card.");
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

  // The summary's card form (one open invoice) opens its checkout on the first Pay click: the server checks that what
  // the page offered is still exactly what is owed, and answers with the SetupIntent and the signed checkout.
  async function checkoutStarted() {
    if (cfg.setupSecret || !cfg.startUrl) { return true; }
    var started = await post(cfg.startUrl, {offer: cfg.offer});
    if (started.status !== "ready") {
      if (started.redirect) { window.location.assign(started.redirect); return false; }
      fail(started.message || NOT_CHARGED);  // no checkout, no SetupIntent: nothing can have been charged
      return false;
    }
    cfg.setupSecret = started.setup_secret;
    cfg.setupId = started.setup_id;
    cfg.attemptKey = started.attempt_key;
    cfg.attemptUrl = started.attempt_url;
    cfg.checkout = started.checkout;
    return true;
  }

  form.addEventListener("submit", async function (event) {
    event.preventDefault();
    if (busy || !card) { return; }
    busy = true;
    button.disabled = true;
    button.textContent = t("msgProcessing", "Processing…");
    errors.textContent = "";
    status.textContent = t("msgChecking", "Checking your card…");
    var body;
    try {
      if (!(await checkoutStarted())) { return; }
      var setup = await stripe.confirmCardSetup(cfg.setupSecret, {payment_method: {card: card}});
      if (setup.error || !setup.setupIntent || setup.setupIntent.status !== "succeeded") {
        fail(setupFailure(setup));
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

  load();
})();
