// The dashboard's only script. The pages work without it; it adds confirmations, "select all",
// and a refresh of the overview's counts every few seconds.
"use strict";

document.addEventListener("click", (event) => {
  const button = event.target.closest("[data-confirm]");
  if (button && !window.confirm(button.dataset.confirm)) {
    event.preventDefault();
  }
});

for (const box of document.querySelectorAll("[data-select-all]")) {
  box.addEventListener("change", () => {
    for (const item of box.form.querySelectorAll('input[name="ids"]')) item.checked = box.checked;
    updateSelection(box.form);
  });
}

function updateSelection(form) {
  const chosen = form.querySelectorAll('input[name="ids"]:checked').length;
  for (const button of form.querySelectorAll("[data-needs-selection]")) {
    button.disabled = chosen === 0;
    button.textContent = chosen ? `Redrive selected (${chosen})` : "Redrive selected";
  }
}

for (const form of document.querySelectorAll("form#selected")) {
  form.addEventListener("change", () => updateSelection(form));
  updateSelection(form);
}

const counts = document.querySelector("[data-refresh]");
if (counts) {
  const refresh = async () => {
    try {
      const response = await fetch(counts.dataset.refresh, { headers: { Accept: "application/json" }, credentials: "same-origin" });
      if (!response.ok) return;
      const data = await response.json();
      if (!data.stats) return;
      for (const cell of counts.querySelectorAll("[data-stat]")) {
        const name = cell.dataset.stat;
        cell.textContent = name === "oldest" ? data.oldest : data.stats[name];
      }
    } catch (error) {
      // The server is restarting or gone: keep the last counts and try again at the next tick.
    }
  };
  window.setInterval(refresh, 5000);
}
