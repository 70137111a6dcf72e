// The payment step: Stripe's script turns the card into a payment method in the browser (the card
// number never reaches our server); we post only its id, and the server confirms the payment and
// checks the result with Stripe. A bank's 3-D Secure check, when asked for, runs here too.
document.addEventListener("DOMContentLoaded", async () => {
  const form = document.getElementById("payment-form");
  if (!form || typeof Stripe !== "function") {
    return;
  }
  const stripe = Stripe(form.dataset.publishableKey);
  const card = stripe.elements().create("card");
  card.mount("#card-element");
  const errors = document.getElementById("card-errors");
  const button = document.getElementById("pay-button");

  const fail = (message) => {
    errors.textContent = message || "Please check your card details.";
    button.disabled = false;
    button.removeAttribute("aria-busy");
  };

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    button.disabled = true;
    button.setAttribute("aria-busy", "true");
    errors.textContent = "";
    let id;
    try {
      if (form.dataset.method === "card") {
        // localstripe's stand-in can only make tokens; their card id works as a payment method.
        const result = await stripe.createToken(card);
        if (result.error) {
          return fail(result.error.message);
        }
        id = result.token.card.id;
      } else {
        const result = await stripe.createPaymentMethod({ type: "card", card });
        if (result.error) {
          return fail(result.error.message);
        }
        id = result.paymentMethod.id;
      }
    } catch (error) {
      return fail("Please enter your card number, expiry date, security code and ZIP code.");
    }
    form.elements.payment_method.value = id;
    form.submit();
  });

  const action = document.getElementById("payment-action");
  if (action) {
    // Whatever the bank answers, the server looks the payment up with Stripe itself.
    await stripe.confirmCardPayment(action.dataset.clientSecret).catch(() => null);
    action.submit();
  }
});
