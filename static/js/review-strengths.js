// The pharmacist's review form: when the drug changes, list only that drug's strengths (all of them,
// grouped by drug, when no drug is chosen). The server lists the same on every page load and refuses
// a strength of another drug, so this only saves a round trip.
document.addEventListener("DOMContentLoaded", () => {
  const drug = document.getElementById("product_id");
  const strength = document.getElementById("strength_id");
  if (!drug || !strength || !strength.dataset.strengths) {
    return;
  }
  const drugs = JSON.parse(strength.dataset.strengths); // [[drug id, drug name, [[id, label], ...]], ...]
  const prompt = strength.options[0].text;

  drug.addEventListener("change", () => {
    const kept = strength.value;
    const chosen = drugs.filter(([id]) => id === drug.value);
    strength.replaceChildren(new Option(prompt, ""));
    for (const [, name, strengths] of chosen.length ? chosen : drugs) {
      const group = document.createElement("optgroup");
      group.label = name;
      for (const [value, label] of strengths) {
        group.append(new Option(label, value, false, value === kept));
      }
      strength.append(group);
    }
  });
});
