// Backup schedule form: the crontab fields matter only for a custom schedule, so they show only then.
document.addEventListener("DOMContentLoaded", () => {
  const preset = document.getElementById("id_preset");
  if (!preset) return;
  const fields = ["minute", "hour", "day_of_week", "day_of_month", "month_of_year"]
    .map((name) => document.getElementById(`field-${name}`))
    .filter(Boolean);
  const update = () => fields.forEach((f) => f.classList.toggle("d-none", preset.value !== "custom"));
  preset.addEventListener("change", update);
  update();
});
