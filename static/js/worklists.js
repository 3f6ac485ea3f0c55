// Front desk: keyboard shortcuts, auto-submitting pickers, and the patient type-ahead.
(() => {
  const typing = (el) => el && (el.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(el.tagName));
  const go = (id) => { const link = document.getElementById(id); if (link) link.click(); };

  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey || typing(document.activeElement)) return;
    const keys = { "[": "prev-day", "]": "next-day", t: "today", n: "new-entry" };
    if (event.key === "/") {
      const search = document.getElementById("wl-search");
      if (search) { event.preventDefault(); search.focus(); search.select(); }
    } else if (keys[event.key]) {
      event.preventDefault();
      go(keys[event.key]);
    }
  });

  document.addEventListener("change", (event) => {
    if (event.target.matches("[data-autosubmit]")) event.target.form.requestSubmit();
  });

  // A click on a known patient fills the patient fields of the schedule form.
  document.addEventListener("click", (event) => {
    const match = event.target.closest(".wl-patient-match");
    if (!match) return;
    for (const [name, value] of Object.entries(match.dataset)) {
      const field = document.getElementById(`id_${name}`);
      if (field) field.value = value;
    }
    document.getElementById("patient-matches").replaceChildren();
    const next = document.getElementById("id_station");
    if (next) next.focus();
  });

  // On the schedule form, focus the first field with an error, else the family name.
  document.addEventListener("DOMContentLoaded", () => {
    const form = document.getElementById("schedule-form");
    if (!form) return;
    const error = form.querySelector(".is-invalid, .field-error");
    const target = error ? error.closest("[id^=field-]")?.querySelector("input, select, textarea")
      : document.getElementById("id_family_name");
    if (target) target.focus();
  });
})();
